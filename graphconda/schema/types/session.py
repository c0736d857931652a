"""What signing out returns."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Browser sessions ended by signOutEverywhere (this one included, when it is one).")
class SignedOut:
    sessions_ended: int = strawberry.field(description="How many live sessions were ended.")
