"""A clock the test sets by hand, for services (`services.clock`) and the scheduler that read the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """Callable like `datetime.now`: returns `now`, which moves only when the test moves it."""

    def __init__(self, now: datetime = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
