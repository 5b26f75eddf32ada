"""Alerts: a live SLO breach per channel and signal, opened and cleared by the controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import ConflictError
from db.models import Alert, Channel, utcnow
from db.repo.lookup import get_row


@dataclass(frozen=True)
class AlertInfo:
    id: int
    channel_id: int
    channel_slug: str
    signal: str
    arm: str
    version_id: int | None  # what the arm served when it opened (None: not kept then)
    message: str
    value: float | None
    threshold: float | None
    opened_at: datetime
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


def _info(row: Alert, slug: str) -> AlertInfo:
    return AlertInfo(
        row.id, row.channel_id, slug, row.signal, row.arm, row.version_id, row.message, row.value,
        row.threshold, row.opened_at, row.cleared_at, row.acknowledged_by, row.acknowledged_at,
    )  # fmt: skip


def _query():
    return select(Alert, Channel.slug).join(Channel, Channel.id == Alert.channel_id)


def open_alert_for(*, session: Session, channel_id: int, signal: str) -> AlertInfo | None:
    """The channel's open alert on `signal`, if any."""
    hit = session.execute(
        _query().where(
            Alert.channel_id == channel_id, Alert.signal == signal, Alert.cleared_at.is_(None)
        )
    ).first()
    return _info(*hit) if hit else None


def insert_alert(
    *, session: Session, channel_id: int, signal: str, message: str,
    value: float | None, threshold: float | None, arm: str = "production",
    version_id: int | None = None,
) -> AlertInfo:  # fmt: skip
    if open_alert_for(session=session, channel_id=channel_id, signal=signal) is not None:
        raise ConflictError(f"an alert on {signal} is already open for this channel")
    row = Alert(channel_id=channel_id, signal=signal, arm=arm, version_id=version_id,
                message=message, value=value, threshold=threshold, opened_at=utcnow())  # fmt: skip
    session.add(row)
    session.flush()
    return get_alert(session=session, alert_id=row.id)


def _row(session: Session, alert_id: int) -> Alert:
    return get_row(session, Alert, alert_id, "alert")


def clear_alert(*, session: Session, alert_id: int) -> AlertInfo:
    row = _row(session, alert_id)
    if row.cleared_at is not None:
        raise ConflictError(f"alert {alert_id} is already cleared")
    row.cleared_at = utcnow()
    session.flush()
    return get_alert(session=session, alert_id=alert_id)


def acknowledge_alert(*, session: Session, alert_id: int, who: str) -> AlertInfo:
    row = _row(session, alert_id)
    if row.acknowledged_at is not None:
        raise ConflictError(f"alert {alert_id} was already acknowledged by {row.acknowledged_by}")
    row.acknowledged_by, row.acknowledged_at = who, utcnow()
    session.flush()
    return get_alert(session=session, alert_id=alert_id)


def get_alert(*, session: Session, alert_id: int) -> AlertInfo:
    _row(session, alert_id)
    return _info(*session.execute(_query().where(Alert.id == alert_id)).one())


def list_alerts(
    *, session: Session, channel_id: int | None = None, open_only: bool = False, limit: int = 100
) -> list[AlertInfo]:
    """Newest first; open ones only when asked."""
    query = _query().order_by(Alert.id.desc()).limit(limit)
    if channel_id is not None:
        query = query.where(Alert.channel_id == channel_id)
    if open_only:
        query = query.where(Alert.cleared_at.is_(None))
    return [_info(*hit) for hit in session.execute(query)]
