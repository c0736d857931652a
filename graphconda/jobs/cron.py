"""Crontab lines as APScheduler triggers, with crontab's weekday numbers.

APScheduler 3's `CronTrigger.from_crontab` passes the weekday field through, but its
weekdays count from Monday = 0, while crontab(5) counts from Sunday = 0 (7 is Sunday too):
"30 2 * * 1-5" would run Tuesday to Saturday. So the weekday field is expanded here into
day names, which mean the same to both.
"""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise ValueError(f"weekday {token} is not 0-7")
        return number
    try:
        return _NAMES.index(token[:3].lower())
    except ValueError:
        raise ValueError(f"unknown weekday {token!r}") from None


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field as APScheduler day names ("1-5" -> "mon,tue,wed,thu,fri")."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in weekday field {field!r}")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, last = span.split("-", 1)
            low, high = _day(first), _day(last)
        else:
            low = _day(span)
            high = 7 if step_text else low
        if high < low:
            raise ValueError(f"weekday range {span!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_NAMES[day] for day in sorted(days))


def cron_trigger(expression: str) -> CronTrigger:
    """The trigger of a five-field crontab line, in UTC; ValueError when it is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(weekday),
                       timezone="UTC")
