"""Fixtures shared by the service-layer tests."""

from __future__ import annotations

import pytest

from graphconda.services.context import Services
from tests.helpers.clock import Clock


@pytest.fixture
def clock(services: Services) -> Clock:
    """A hand-set clock the services read instead of the real time."""
    clock = Clock()
    services.clock = clock
    return clock
