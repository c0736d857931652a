"""The document limits checked before an operation runs: fragment nesting, depth, aliases, size and cost.

Fragments let a small document stand for a huge one: `fragment F1 on Channel { ...F0 ...F0 }`,
`F2` spreading `F1` twice, and so on, is 2**450 fields in 4000 tokens. Strawberry's
`QueryDepthLimiter` and `MaxAliasesLimiter` expand every spread, so such a document held the
event loop for minutes. Here each fragment is measured once (memoised), in time linear in the
document, and a spread adds its fragment's measure where it stands, so the numbers are those
of the expanded operation without expanding it:

- nesting: selection sets inside each other, through spreads; over `NESTING_LIMIT` the document
  is refused before anything else is measured (which also bounds the recursion below);
- depth: fields inside each other (Strawberry's rule: introspection fields are leaves);
- aliases: aliased fields, in all operations of the document (as Strawberry counted them);
- fields: every field selection once fragments are spread; at most `graphql_max_tokens`, the
  size the token limit allows an operation written out in full;
- cost: the most objects the operation that runs can return (cost.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from graphconda.schema.cost import CostEstimator, cost_error

# Far beyond any real document (GraphiQL's introspection query nests 18 deep), and low
# enough that the measuring below recurses well within Python's stack.
NESTING_LIMIT = 100
TOO_BIG = "QUERY_TOO_BIG"


@dataclass(frozen=True)
class Measure:
    """One selection set with its fragments spread: field levels, aliases and fields."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0


def _nesting(selection_set: SelectionSetNode) -> tuple[int, list[tuple[str, int]]]:
    """Nesting of one definition's own selection sets, and its spreads with the nesting they stand at."""
    deepest, spreads = 0, []
    stack = [(selection_set, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        for selection in current.selections:
            if isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, level))
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set is not None:
                stack.append((selection.selection_set, level + 1))
    return deepest, spreads


class DocumentShape:
    """The measures of one document's operations, each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        self.memo: dict[str, Measure] = {}
        self.visiting: set[str] = set()

    def nesting(self) -> int:
        """The deepest nesting of selection sets through spreads; no recursion (the document may be hostile)."""
        own = {name: _nesting(f.selection_set) for name, f in self.fragments.items()}
        depths: dict[str, int] = {}

        def through(deepest: int, spreads: list[tuple[str, int]]) -> int:
            return max([deepest, *(level + depths.get(name, 0) for name, level in spreads)])

        for root in own:
            # Depth-first over spreads with an explicit stack, finishing each fragment after those
            # it spreads; a spread closing a cycle counts nothing (NoFragmentCycles reports it).
            path = [(root, iter(own[root][1]))] if root not in depths else []
            on_path = {root}
            while path:
                name, spreads = path[-1]
                for spread, _ in spreads:
                    if spread in own and spread not in depths and spread not in on_path:
                        path.append((spread, iter(own[spread][1])))
                        on_path.add(spread)
                        break
                else:
                    path.pop()
                    on_path.discard(name)
                    depths[name] = through(*own[name])
        return max([0, *(through(*_nesting(o.selection_set)) for o in self.operations)])

    def measure(self, selection_set: SelectionSetNode) -> Measure:
        depth = aliases = fields = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                inner = self.measure(selection.selection_set) if selection.selection_set else Measure()
                leaf = selection.selection_set is None or selection.name.value.startswith("__")
                depth = max(depth, 0 if leaf else 1 + inner.depth)
                aliases += inner.aliases + (selection.alias is not None)
                fields += 1 + inner.fields
                continue
            if isinstance(selection, InlineFragmentNode):
                inner = self.measure(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
            else:
                continue
            depth = max(depth, inner.depth)
            aliases += inner.aliases
            fields += inner.fields
        return Measure(depth, aliases, fields)

    def fragment(self, name: str) -> Measure:
        if name not in self.memo:
            definition = self.fragments.get(name)
            if definition is None or name in self.visiting:
                return Measure()  # unknown or cyclic: the specified rules report it
            self.visiting.add(name)
            try:
                self.memo[name] = self.measure(definition.selection_set)
            finally:
                self.visiting.discard(name)
        return self.memo[name]


def _count(n: int) -> str:
    # A doubling document reaches numbers of a hundred digits; say how big, not every digit.
    return str(n) if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def limit_errors(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None,
    *,
    max_depth: int,
    max_aliases: int,
    max_fields: int,
    max_cost: int,
    max_page_size: int,
) -> list[GraphQLError]:
    """What in `document` is over a limit; measured once, in time linear in the document."""
    shape = DocumentShape(document)
    nesting = shape.nesting()
    if nesting > NESTING_LIMIT:
        message = f"selections nest {nesting} levels deep (fragments included), over the limit of {NESTING_LIMIT}"
        return [GraphQLError(message, extensions={"code": TOO_BIG})]
    errors = []
    measures = [(o, shape.measure(o.selection_set)) for o in shape.operations]
    for operation, measure in measures:
        if measure.depth > max_depth:
            name = operation.name.value if operation.name else "anonymous"
            errors.append(GraphQLError(
                f"'{name}' exceeds maximum operation depth of {max_depth}", operation, extensions={"code": TOO_BIG}))
    aliases = sum(m.aliases for _, m in measures)
    if aliases > max_aliases:
        errors.append(GraphQLError(
            f"{_count(aliases)} aliases found. Allowed: {max_aliases}", extensions={"code": TOO_BIG}))
    for operation, measure in measures:
        if measure.fields > max_fields:
            errors.append(GraphQLError(
                f"the operation expands to {_count(measure.fields)} fields once its fragments are spread, "
                f"over the limit of {max_fields}: spread each fragment fewer times",
                operation, extensions={"code": TOO_BIG}))
    estimator = CostEstimator(schema, shape.fragments, variables, max_page_size=max_page_size, list_size=max_page_size)
    for operation in shape.operations:
        if operation_name is not None and (operation.name is None or operation.name.value != operation_name):
            continue  # only the operation that runs costs anything
        cost = estimator.operation(operation)
        if cost > max_cost:
            errors.append(cost_error(operation, cost, max_cost, max_page_size))
    return errors


class QueryLimits(SchemaExtension):
    """Checks the limits on the parsed document, before (and instead of) validation when one is exceeded.

    A document over a limit is refused with these errors alone: the specified validation
    rules never walk it (they take tens of milliseconds on a hostile one, on the event loop).
    """

    def __init__(self, *, max_depth: int, max_aliases: int, max_fields: int, max_cost: int, max_page_size: int) -> None:
        self.limits = {"max_depth": max_depth, "max_aliases": max_aliases, "max_fields": max_fields,
                       "max_cost": max_cost, "max_page_size": max_page_size}

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            variables = context.variables if isinstance(context.variables, dict) else {}
            errors = limit_errors(
                context.schema._schema,  # the graphql-core schema (Strawberry offers no public name)
                context.graphql_document, variables, context.operation_name, **self.limits)
            if errors:
                context.pre_execution_errors = errors  # Strawberry then skips validation
        yield
