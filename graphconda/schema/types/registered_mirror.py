"""RegisteredMirror: a downstream mirror of a channel whose download figures this server pulls."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphconda.db import models


@strawberry.type(description="A mirror of this channel on another server; `synchronize_metrics` pulls its "
                             "download figures into the channel's.")
class RegisteredMirror:
    id: strawberry.ID
    url: str
    api_endpoint: str
    metrics_endpoint: str
    last_synchronised: datetime | None = strawberry.field(description="When its figures were last pulled.")
    last_error: str | None = strawberry.field(description="Why the last pull failed; null when it worked.")

    @classmethod
    def from_model(cls, mirror: models.RegisteredMirror) -> RegisteredMirror:
        return cls(id=strawberry.ID(str(mirror.id)), url=mirror.url, api_endpoint=mirror.api_endpoint,
                   metrics_endpoint=mirror.metrics_endpoint, last_synchronised=mirror.last_synced_at,
                   last_error=mirror.last_error or None)
