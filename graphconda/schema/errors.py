"""Typed GraphQL errors: what mutations return instead of raising, and how errors are masked.

Services raise exceptions from graphconda.errors; `outcome` turns the public ones into
the typed error objects a mutation's `...Result` union lists, so clients switch on
`__typename`. Anything else is an unexpected failure: it propagates, Strawberry logs it,
and `PublicErrorsOnly` masks its message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, get_args

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from graphconda import errors

T = TypeVar("T")
R = TypeVar("R")


@strawberry.interface(description="An expected failure; `message` is safe to show to the user.")
class Error:
    message: str


@strawberry.type(description="The caller is not allowed to do this (or must log in first).")
class PermissionDenied(Error):
    pass


@strawberry.type(description="The thing does not exist, or is private and the caller may not see it.")
class NotFound(Error):
    pass


@strawberry.type(description="A name or file with this identity exists already.")
class AlreadyExists(Error):
    pass


@strawberry.type(description="The current state forbids it (for example, uploading to a mirror channel).")
class Conflict(Error):
    pass


@strawberry.type(description="An argument is invalid; `field` is the path of the offending input field.")
class InvalidInput(Error):
    field: str | None = None


@strawberry.type(description="Over a configured size limit.")
class TooLarge(Error):
    pass


# Most specific first: InvalidInputError subclasses map to InvalidInput, and so on.
_MAPPING: tuple[tuple[type[errors.PublicError], type[Error]], ...] = (
    (errors.AuthenticationError, PermissionDenied),
    (errors.PermissionDeniedError, PermissionDenied),
    (errors.NotFoundError, NotFound),
    (errors.AlreadyExistsError, AlreadyExists),
    (errors.ConflictError, Conflict),
    (errors.InvalidInputError, InvalidInput),
    (errors.TooLargeError, TooLarge),
)


def to_error(exc: errors.PublicError, fields: dict[str, str] | None = None) -> Error:
    """The typed error for a public exception; `fields` renames service field names to input paths."""
    for source, target in _MAPPING:
        if isinstance(exc, source):
            if target is InvalidInput:
                field = getattr(exc, "field", None)
                return InvalidInput(message=exc.message, field=(fields or {}).get(field or "", field))
            return target(message=exc.message)
    return InvalidInput(message=exc.message)


def union_members(annotation: Any) -> tuple[type, ...]:
    """The types of an `Annotated[A | B, strawberry.union(...)]` result union."""
    return get_args(get_args(annotation)[0])


async def outcome(
    call: Awaitable[T],
    to_type: Callable[[T], R],
    result_union: Any,
    *,
    fields: dict[str, str] | None = None,
) -> Any:
    """Await a service call and map its result, or return the typed error for a public failure.

    Typed Any: the value is `R` or one of `result_union`'s error members, which each
    resolver's declared return type (the union) states and mypy cannot derive from here.

    A public failure whose type the union does not list is raised instead: it reaches the
    client as an (unmasked) GraphQL error rather than as an invalid union member.
    """
    try:
        result = await call
    except errors.PublicError as exc:
        error = to_error(exc, fields)
        if type(error) not in union_members(result_union):
            raise
        return error
    return to_type(result)


def is_public(error: GraphQLError) -> bool:
    """Syntax, validation and coercion errors, and public domain errors, may be shown as they are."""
    original = error.original_error
    return original is None or isinstance(original, (errors.PublicError, GraphQLError))


class PublicErrorsOnly(MaskErrors):
    """Masks unexpected errors; public ones get an `extensions.code` (and `field`) clients can switch on."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not is_public(error), error_message="Internal server error.")

    def _process_errors(self, errors_: list[GraphQLError]) -> list[GraphQLError]:
        for error in errors_:
            original = error.original_error
            if isinstance(original, errors.PublicError):
                extensions: dict[str, Any] = dict(error.extensions or {})
                extensions["code"] = type(to_error(original)).__name__
                if getattr(original, "field", None):
                    extensions["field"] = original.field  # type: ignore[attr-defined]
                error.extensions = extensions
        return super()._process_errors(errors_)


ERROR_TYPES: tuple[type[Error], ...] = (PermissionDenied, NotFound, AlreadyExists, Conflict, InvalidInput, TooLarge)
