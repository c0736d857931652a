"""Member: a user and the role they hold on a channel or package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from graphconda.db import models
from graphconda.schema.types.enums import Role

if TYPE_CHECKING:
    from graphconda.schema.types.user import User


@strawberry.type(description="A user with a role on a channel or package.")
class Member:
    user: Annotated[User, strawberry.lazy("graphconda.schema.types.user")]
    role: Role

    @classmethod
    def from_model(cls, user: models.User, role: str) -> Member:
        from graphconda.schema.types.user import User

        return cls(user=User.from_model(user), role=Role(role))
