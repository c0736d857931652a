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
    """The path of the first unstorable string in a variable's value, else None."""
    if isinstance(value, str):
        return path if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        items = value.items()
        return next((p for k, v in items if (p := _bad(k, path) or _bad(v, f"{path}.{k}"))), None)
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := _bad(v, path))), None)
    return None


def _bad_node(node: Any, variables: dict[str, Any], path: str) -> str | None:
    """The same for an argument's value as written in the document (literals, variables, objects, lists)."""
    if isinstance(node, VariableNode):
        return _bad(variables.get(node.name.value), path)
    if isinstance(node, StringValueNode):
        return path if _UNSTORABLE.search(node.value) else None
    if isinstance(node, ListValueNode):
        return next((p for v in node.values if (p := _bad_node(v, variables, path))), None)
    if isinstance(node, ObjectValueNode):
        return next((p for f in node.fields if (p := _bad_node(f.value, variables, f"{path}.{f.name.value}"))), None)
    return None


def _first_bad(node: Any, variables: dict[str, Any]) -> str | None:
    """Walk the document (small: the token limit applies) for arguments and variable defaults."""
    if isinstance(node, ArgumentNode):
        return _bad_node(node.value, variables, node.name.value)
    if isinstance(node, VariableDefinitionNode) and node.default_value is not None:
        found = _bad_node(node.default_value, {}, node.variable.name.value)
        if found:
            return found
    if isinstance(node, Node):
        return next((p for key in node.keys if (p := _first_bad(getattr(node, key, None), variables))), None)
    if isinstance(node, list | tuple):
        return next((p for item in node if (p := _first_bad(item, variables))), None)
    return None


class UnstorableTextGuard(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        # Variables are checked where arguments use them; unused ones reach no resolver.
        field = _first_bad(context.graphql_document, context.variables or {})
        if field is not None:
            # Set before validation runs: Strawberry then skips it and answers with this error.
            error = GraphQLError(MESSAGE, extensions={"code": "InvalidInput", "field": field})
            context.pre_execution_errors = [error]
        yield
