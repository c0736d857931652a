"""Relay connections paged by keyset in SQL, with opaque cursors and validated page arguments.

A `Keyset` names the ordering of a list (unique, so that "after this row" is exact). A
cursor is that row's key, tagged with the list kind, as URL-safe base64 JSON: opaque to
clients, and checked on the way back in (a cursor of another list, or any garbage, is a
clear error, never a 500 and never a silently wrong page). Pages are fetched with
`WHERE (key) > (cursor) ORDER BY key LIMIT first + 1`; nested connections (the packages of
each channel on a page) are fetched for all parents at once with ROW_NUMBER() per parent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import aliased
from strawberry.relay import PageInfo

from graphconda.errors import InvalidInputError

NodeT = TypeVar("NodeT")
DEFAULT_PAGE_SIZE = 20
_MAX_CURSOR_LENGTH = 1024

First = Annotated[
    int | None,
    strawberry.argument(description="Page size: 0 to the server's limit (100 unless configured); 20 when omitted."),
]
After = Annotated[
    str | None, strawberry.argument(description="Start after this cursor (`pageInfo.endCursor` of the last page).")
]


@strawberry.type(description="An edge in a connection: a node and the cursor that points at it.")
class Edge(Generic[NodeT]):
    cursor: str = strawberry.field(description="Pass as `after` to get the items that follow this one.")
    node: NodeT


@strawberry.type(description="One page of a list. Page forward with `first` and `after: pageInfo.endCursor`.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items the whole list holds (all pages, same filter).")
    async def total_count(self) -> int:
        return await self.count()

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


@dataclass(frozen=True)
class Keyset:
    """The unique ordering of one kind of list: SQL expressions and the Python types of their values."""

    kind: str
    columns: tuple[Any, ...]
    types: tuple[type, ...]
    descending: bool = False

    def encode(self, values: Sequence[Any]) -> str:
        plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]  # datetimes as ISO text
        raw = json.dumps([self.kind, *plain], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[Any, ...]:
        try:
            if len(cursor) > _MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data = json.loads(raw)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            data = None
        if not (
            isinstance(data, list)
            and len(data) == len(self.types) + 1
            and data[0] == self.kind
            and all(type(v) is (str if t is datetime else t) for v, t in zip(data[1:], self.types, strict=True))
        ):
            raise InvalidInputError(
                "invalid cursor: pass `after` a `pageInfo.endCursor` (or edge cursor) from this same list",
                field="after",
            )
        try:
            return tuple(datetime.fromisoformat(v) if t is datetime else v
                         for v, t in zip(data[1:], self.types, strict=True))
        except ValueError:
            raise InvalidInputError("invalid cursor: pass `after` a `pageInfo.endCursor` (or edge cursor) from "
                                    "this same list", field="after") from None

    def order_by(self) -> list[Any]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]

    def after(self, values: tuple[Any, ...]) -> Any:
        key = tuple_(*self.columns)
        return key < values if self.descending else key > values


@dataclass(frozen=True)
class Page:
    """Validated `first` and decoded `after` of one connection field."""

    first: int
    after: tuple[Any, ...] | None


def page_args(keyset: Keyset, first: int | None, after: str | None, max_size: int) -> Page:
    """Check `first` and decode `after`; InvalidInputError (a clear GraphQL error) otherwise."""
    if first is None:
        first = min(DEFAULT_PAGE_SIZE, max_size)
    if first < 0:
        raise InvalidInputError(f"first must not be negative (got {first})", field="first")
    if first > max_size:
        raise InvalidInputError(f"first must be at most {max_size} (got {first}); page with `after`", field="first")
    return Page(first=first, after=keyset.decode(after) if after is not None else None)


def _with_keys(stmt: Select[Any], keyset: Keyset, page: Page) -> Select[Any]:
    stmt = stmt.add_columns(*(c.label(f"key_{i}") for i, c in enumerate(keyset.columns)))
    return stmt.where(keyset.after(page.after)) if page.after is not None else stmt


def paginate(stmt: Select[Any], keyset: Keyset, page: Page) -> Select[Any]:
    """One page of `stmt` (rows: the selected entity, then the key values), plus one row to see if more follow."""
    return _with_keys(stmt, keyset, page).order_by(*keyset.order_by()).limit(page.first + 1)


def paginate_per_parent(stmt: Select[Any], entity: Any, keyset: Keyset, page: Page, parent: Any) -> Select[Any]:
    """The same page of `stmt` for each `parent` value it selects, in one query.

    Rows: the entity, the parent id, then the key values.
    """
    numbered = _with_keys(stmt, keyset, page).add_columns(
        parent.label("parent_id"),
        func.row_number().over(partition_by=parent, order_by=keyset.order_by()).label("row_number"),
    )
    sub = numbered.subquery()
    keys = [sub.c[f"key_{i}"] for i in range(len(keyset.columns))]
    return (
        select(aliased(entity, sub), sub.c.parent_id, *keys)
        .where(sub.c.row_number <= page.first + 1)
        .order_by(sub.c.parent_id, sub.c.row_number)
    )


def connection(
    rows: Sequence[Any],
    keyset: Keyset,
    page: Page,
    to_node: Callable[[Any], NodeT],
    count: Callable[[], Awaitable[int]],
) -> Connection[NodeT]:
    """A Connection from the rows of `paginate` (entity first, key values last)."""
    width = len(keyset.columns)
    edges = [Edge(cursor=keyset.encode(tuple(row[-width:])), node=to_node(row[0])) for row in rows[: page.first]]
    info = PageInfo(
        has_next_page=len(rows) > page.first,
        has_previous_page=page.after is not None,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return Connection(edges=edges, page_info=info, count=count)
