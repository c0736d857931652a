"""Refuses text no database can store: NUL characters and unpaired surrogates in any string argument.

PostgreSQL rejects NUL in text and every driver fails to encode a lone surrogate (JSON
can carry both: `"\\u0000"`, `"\\ud800"`), so such a value would fail deep inside a
service, after validation, as an internal error. Checked once here, for literals and
variables alike, before anything runs; the answer is an ordinary GraphQL error with
`extensions.field`, the argument's path (`input.description`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from graphql.language import (
    ArgumentNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    StringValueNode,
    VariableDefinitionNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

# NUL, or a surrogate code point (never valid on its own in a Python str that came from UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "text arguments must not contain NUL characters or unpaired surrogates"


def _bad(value: Any, path: str) -> str | None:
    """The path of the first unstorable string in a variable's value, else None.

    Walked with a stack, not recursion: a websocket client's variables nest as deep as it likes.
    """
    stack = [(value, path)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, str):
            if _UNSTORABLE.search(current):
                return at
        elif isinstance(current, dict):
            for key, item in reversed(current.items()):
                stack.append((item, f"{at}.{key}"))
                stack.append((key, at))
        elif isinstance(current, list | tuple):
            stack.extend((item, at) for item in reversed(current))
    return None


def _bad_node(node: Any, variables: dict[str, Any], path: str) -> str | None:
    """The same for an argument's value as written in the document (literals, variables, objects, lists)."""
    stack = [(node, path)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, VariableNode):
            found = _bad(variables.get(current.name.value), at)
            if found:
                return found
        elif isinstance(current, StringValueNode):
            if _UNSTORABLE.search(current.value):
                return at
        elif isinstance(current, ListValueNode):
            stack.extend((v, at) for v in reversed(current.values))
        elif isinstance(current, ObjectValueNode):
            stack.extend((f.value, f"{at}.{f.name.value}") for f in reversed(current.fields))
    return None


def _first_bad(document: Any, variables: dict[str, Any]) -> str | None:
    """Walk the document for arguments and variable defaults, in document order, with a stack
    (selections may nest 200 deep, too deep for a recursive walk on top of the request's stack)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, ArgumentNode):
            found = _bad_node(node.value, variables, node.name.value)
            if found:
                return found
            continue
        if isinstance(node, VariableDefinitionNode) and node.default_value is not None:
            found = _bad_node(node.default_value, {}, node.variable.name.value)
            if found:
                return found
        if isinstance(node, Node):
            stack.extend(getattr(node, key, None) for key in reversed(node.keys))
        elif isinstance(node, list | tuple):
            stack.extend(reversed(node))
    return None


class UnstorableTextGuard(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is not None:  # refused already (limits.py)
            yield
            return
        # Variables are checked where arguments use them; unused ones reach no resolver.
        field = _first_bad(context.graphql_document, context.variables or {})
        if field is not None:
            # Set before validation runs: Strawberry then skips it and answers with this error.
            error = GraphQLError(MESSAGE, extensions={"code": "InvalidInput", "field": field})
            context.pre_execution_errors = [error]
        yield
