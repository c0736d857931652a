"""The Quetz-compatible REST API under /api: thin adapters over services, one module per subject.

See the README's "Quetz REST API" section for what exists, what differs and what is left out.
"""

from __future__ import annotations

from typing import Any

from graphconda.http.quetz import channels, members

routes: list[Any] = [*members.routes, *channels.routes]
