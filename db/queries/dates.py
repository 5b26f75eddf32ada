"""Date-range filters shared by the dashboard's lists (whole UTC days, both ends included)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def within_days(query: Select, column, first: date | None, last: date | None) -> Select:
    """Rows whose `column` falls on `first` .. `last` (either may be open)."""
    if first:
        query = query.where(column >= day_start(first))
    if last:
        query = query.where(column < day_start(last) + timedelta(days=1))
    return query
