"""Enums and scalars shared by the GraphQL types."""

from __future__ import annotations

from enum import Enum
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from graphconda.services import authz


@strawberry.enum(description="A role on the server, on a channel or on a package (owner > maintainer > member).")
class Role(Enum):
    OWNER = "owner"
    MAINTAINER = "maintainer"
    MEMBER = "member"

    @classmethod
    def of(cls, value: str | None) -> Role | None:
        return cls(str(value)) if value else None

    @property
    def domain(self) -> authz.Role:
        return authz.Role(self.value)


@strawberry.enum(description="How a channel gets its packages besides uploads.")
class MirrorMode(Enum):
    PROXY = strawberry.enum_value("proxy", description="Fetched from the upstream channel on demand and cached.")
    MIRROR = strawberry.enum_value("mirror", description="A full copy of the upstream channel, kept by sync jobs.")

    @classmethod
    def of(cls, value: str | None) -> MirrorMode | None:
        return cls(value) if value else None


# Sizes and millisecond timestamps outgrow GraphQL's 32-bit Int (see SCALARS, given to the schema).
BigInt = NewType("BigInt", int)
# Job arguments: a small object whose shape depends on the job kind. (Not Strawberry's JSON, whose
# @specifiedBy the introspected schema omits, so schema.graphql would not match what is served.)
JSON = NewType("JSON", object)

SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer that may exceed 32 bits (byte sizes, millisecond timestamps).",
        serialize=int,
        parse_value=int,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value (job arguments: an object of argument names and values).",
        serialize=lambda value: value,
        parse_value=lambda value: value,
    ),
}
