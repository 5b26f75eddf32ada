"""Counts that stay fast on millions of rows: stop counting at a cap and say "N+" beyond it.

A page needs "143 to review" exactly, but "10,000+" is as useful as "734,112" and costs a
bounded index scan instead of a full one."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.models import Feedback

# Beyond this a count is shown as "10,000+".
COUNT_CAP = 10_000


def capped_count(session: Session, query: Select, cap: int = COUNT_CAP) -> int:
    """Rows of `query` (a select of any one column), counted up to `cap` + 1: a result above
    `cap` means "more than cap"."""
    limited = query.limit(cap + 1).subquery()
    return session.scalar(select(func.count()).select_from(limited)) or 0


def shown(count: int, cap: int = COUNT_CAP) -> str:
    """`count` for a page: "1,234", or "10,000+" when it reached the cap."""
    return f"{cap:,}+" if count > cap else f"{count:,}"


def pending_feedback(session: Session, channel_id: int, rating: str | None = None) -> int:
    """Feedback of `channel_id` waiting for review (only `rating`'s, when given), capped."""
    query = select(Feedback.id).where(
        Feedback.review_status == "pending", Feedback.channel_id == channel_id
    )
    if rating is not None:
        query = query.where(Feedback.rating == rating)
    return capped_count(session, query)
