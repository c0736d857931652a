"""Package search across the channels a caller may see, ranked in SQL.

Rank (lower is better): 0 exact name, 1 name prefix, 2 name substring, 3 summary or
description substring. Matching is case-insensitive and treats the query literally
(`%` and `_` are not wildcards). Private channels the caller may not see never match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, or_, select

from graphconda.db.models import Channel, Package
from graphconda.errors import InvalidInputError
from graphconda.services.authz import Actor, visible_channels_clause

MAX_QUERY_LENGTH = 100


@dataclass(frozen=True)
class SearchQuery:
    """A search as SQL: the matching packages and the rank expression to order them by."""

    statement: Select[Package]
    rank: ColumnElement[int]


def normalize(text: str) -> str:
    """The query as searched: stripped, lowercase, 1-100 characters."""
    cleaned = text.strip().lower() if isinstance(text, str) else ""
    if not cleaned:
        raise InvalidInputError("the search query must not be empty", field="query")
    if len(cleaned) > MAX_QUERY_LENGTH or "\x00" in cleaned:
        raise InvalidInputError(f"the search query is at most {MAX_QUERY_LENGTH} characters", field="query")
    return cleaned


def search_packages(actor: Actor, text: str) -> SearchQuery:
    """SELECT of the visible packages matching `text`; callers order by (rank, name, id) and page."""
    q = normalize(text)
    name = func.lower(Package.name)
    rank: ColumnElement[Any] = case(
        (name == q, 0),
        (name.startswith(q, autoescape=True), 1),
        (name.contains(q, autoescape=True), 2),
        else_=3,
    )
    matches = or_(
        name.contains(q, autoescape=True),
        func.lower(Package.summary).contains(q, autoescape=True),
        func.lower(Package.description).contains(q, autoescape=True),
    )
    statement = (
        select(Package)
        .join(Channel, Channel.id == Package.channel_id)  # type: ignore[arg-type]
        .where(visible_channels_clause(actor), matches)
    )
    return SearchQuery(statement=statement, rank=rank)
