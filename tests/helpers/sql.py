"""Counting the SQL statements the app sends, for tests that guard against N+1 queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from graphconda.services.context import Services


@contextmanager
def count_statements(services: Services) -> Iterator[list[str]]:
    """Every statement sent to the database (BEGIN included) while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engines = {services.db.read_engine.sync_engine, services.db.write_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
