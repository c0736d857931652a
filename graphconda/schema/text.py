"""Refuses text no database can store: NUL characters and unpaired surrogates in any string argument.

PostgreSQL rejects NUL in text and every driver fails to encode a lone surrogate (JSON
can carry both: `"\\u0000"`, `"\\ud800"`), so such a value would fail deep inside a
service, after validation, as an internal error. Checked once here, for literals and
variables alike, before anything runs; the answer is an ordinary GraphQL error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, StringValueNode
from graphql.language import Node
from strawberry.extensions import SchemaExtension

# NUL, or a surrogate code point (never valid on its own in a Python str that came from UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "text arguments must not contain NUL characters or unpaired surrogates"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _literals(node: Any) -> Iterator[str]:
    """String literals anywhere in a parsed document (documents are small: the token limit applies)."""
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, Node):
        for key in node.keys:
            yield from _literals(getattr(node, key, None))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _literals(item)


class UnstorableTextGuard(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        texts = [*_strings(context.variables), *_literals(context.graphql_document)]
        if any(_UNSTORABLE.search(text) for text in texts):
            # Set before validation runs: Strawberry then skips it and answers with this error.
            context.pre_execution_errors = [GraphQLError(MESSAGE, extensions={"code": "InvalidInput"})]
        yield
