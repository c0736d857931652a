"""The query cost limit: an upper bound on the objects an operation can return, checked before it runs.

Depth, token and alias limits bound the document, not its answer: a dozen tokens of nested
`first: 100` pages ask for a million rows. So validation also estimates the most objects the
selected operation can return, and refuses it (`extensions.code: QUERY_TOO_COSTLY`, no
resolver runs) when that is over `limits.graphql_max_cost`.

The estimate, per object field, multiplied down its path:

- a field with a `first` argument (a connection) pages its list fields (`edges`, `nodes`) by
  `first`: a literal, a variable (its value, else its default), else the default page size;
  values are clamped to what the resolver accepts (0 to `limits.graphql_max_page_size`);
- any other list of objects (members, API keys: not paged) counts `list_size`;
- a single object counts 1; scalars and scalar lists come with their object and count 0;
- fragments and inline fragments count where they are spread, and every selection counts,
  so aliases (and a field selected twice) add up;
- introspection (`__schema`, `__type`) counts like any other field, its lists by their mean
  length in this schema (`__Schema.types` all types, `__Type.fields` the fields per type...),
  so a full-schema introspection costs about the objects it returns (one is a few thousand)
  and aliased copies of it add up; `__typename` is a scalar.

Fragment costs are memoised, so estimating takes time linear in the document; limits.py runs
the estimate (after refusing documents that nest too deeply for its recursion).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    VariableNode,
    get_named_type,
    is_composite_type,
    value_from_ast_untyped,
)
from graphql.language import ValueNode

from graphconda.schema.pagination import DEFAULT_PAGE_SIZE

CODE = "QUERY_TOO_COSTLY"
# Costs are ints, except below introspection, whose mean list lengths are fractions.
Cost = int | Fraction
META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


@lru_cache(maxsize=8)
def introspection_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], Fraction]:
    """Mean length of each introspection list in `schema`, keyed by (parent type, field).

    A mean over all parents of that kind, so the estimate is exact for what introspection
    queries walk most: every type's fields, every field's arguments.
    """
    types = list(schema.type_map.values())
    with_fields = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [f for t in with_fields for f in t.fields.values()]
    directives = schema.directives

    def mean(total: int, parents: int) -> Fraction:
        return Fraction(total, max(parents, 1))

    return {
        ("__Schema", "types"): Fraction(len(types)),
        ("__Schema", "directives"): Fraction(len(directives)),
        ("__Type", "fields"): mean(len(fields), len(types)),
        ("__Type", "interfaces"): mean(sum(len(t.interfaces) for t in with_fields), len(types)),
        ("__Type", "possibleTypes"): mean(
            sum(len(schema.get_possible_types(t)) for t in types
                if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)), len(types)),
        ("__Type", "enumValues"): mean(
            sum(len(t.values) for t in types if isinstance(t, GraphQLEnumType)), len(types)),
        ("__Type", "inputFields"): mean(
            sum(len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)), len(types)),
        ("__Field", "args"): mean(sum(len(f.args) for f in fields), len(fields)),
        ("__Directive", "args"): mean(sum(len(d.args) for d in directives), len(directives)),
    }


class CostEstimator:
    """The most objects each operation of one document can return (see the module docstring)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        *,
        max_page_size: int,
        list_size: int,
    ) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables
        self.max_page_size, self.list_size = max_page_size, list_size
        self.defaults: dict[str, ValueNode] = {}
        self.memo: dict[tuple[str, int | None], Cost] = {}
        self.introspection = introspection_sizes(schema)
        self.visiting: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> int:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        self.defaults = {
            d.variable.name.value: d.default_value
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }
        self.memo.clear()  # fragment costs depend on this operation's variable defaults
        return math.ceil(self.selections(operation.selection_set, root, None))

    def selections(self, selection_set: SelectionSetNode, parent: Any, page: int | None) -> Cost:
        """Cost of one `parent` object's selections; `page` sizes its lists when it is a connection."""
        total: Cost = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                scope = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, scope, page) if scope else 0
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int | None) -> Cost:
        key = (name, page)
        if key not in self.memo:
            definition = self.fragments.get(name)
            scope = self.schema.get_type(definition.type_condition.name.value) if definition else None
            if definition is None or scope is None or name in self.visiting:
                return 0  # unknown or cyclic: other validation rules report it
            self.visiting.add(name)
            try:
                self.memo[key] = self.selections(definition.selection_set, scope, page)
            finally:
                self.visiting.discard(name)
        return self.memo[key]

    def field(self, node: FieldNode, parent: Any, page: int | None) -> Cost:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        name = node.name.value
        definition = parent.fields.get(name) or META_FIELDS.get(name)
        if definition is None or node.selection_set is None:
            return 0
        named = get_named_type(definition.type)
        if not is_composite_type(named):
            return 0
        size = self.introspection.get((parent.name, name))
        count: Cost = 1
        for _ in range(_list_depth(definition.type)):
            count *= size if size is not None else self.list_size if page is None else page
        if count == 0:
            return 0
        inner = self.first(node, definition) if "first" in definition.args else None
        return count * (1 + self.selections(node.selection_set, named, inner))

    def first(self, node: FieldNode, definition: GraphQLField) -> int:
        """The page size a connection field will use, as `pagination.page_args` would decide it."""
        value: Any = None
        argument = next((a for a in node.arguments or () if a.name.value == "first"), None)
        if argument is not None:
            if isinstance(argument.value, VariableNode):
                name = argument.value.name.value
                if name in self.variables:
                    value = self.variables[name]
                elif name in self.defaults:
                    value = value_from_ast_untyped(self.defaults[name])
            else:
                value = value_from_ast_untyped(argument.value)
        if value is None:
            return min(DEFAULT_PAGE_SIZE, self.max_page_size)
        if type(value) is not int:
            return self.max_page_size  # refused when coerced; assume the worst meanwhile
        return max(0, min(value, self.max_page_size))


def _list_depth(type_: GraphQLOutputType) -> int:
    depth = 0
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        if isinstance(type_, GraphQLList):
            depth += 1
        type_ = type_.of_type
    return depth


def cost_error(operation: OperationDefinitionNode, cost: int, max_cost: int, list_size: int) -> GraphQLError:
    """The error refusing `operation`, with its cost (a string past what a JSON number holds exactly)."""
    shown: int | str = cost if cost < 2**53 else f"about 10^{len(str(cost)) - 1}"
    return GraphQLError(
        f"query cost {shown} is over the limit of {max_cost}: the most objects it could "
        f"return (connections count `first` per parent, other lists {list_size}); "
        "ask for smaller pages or fewer nested lists",
        operation,
        extensions={"code": CODE, "cost": shown, "maxCost": max_cost},
    )
