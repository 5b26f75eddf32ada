"""Alert actions: the controller opens and clears alerts; a person acknowledges them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from db.repo import alerts as repo
from db.repo.alerts import AlertInfo


@action("alert.open", role="manager")
def open_alert(
    *, session: Session, actor: Actor, channel_id: int, signal: str, message: str,
    value: float | None = None, threshold: float | None = None, arm: str = "production",
    version_id: int | None = None,
) -> AlertInfo:  # fmt: skip
    """Open an alert on one of a channel's signals (the controller does, on M of N breaches),
    naming the version the arm serves (`version_id`) when known."""
    info = repo.insert_alert(
        session=session, channel_id=channel_id, signal=signal, message=message,
        value=value, threshold=threshold, arm=arm, version_id=version_id,
    )  # fmt: skip
    audit(session, actor, "alert.open", "channel", info.channel_slug, alert_id=info.id,
          signal=signal, value=value, threshold=threshold, version_id=version_id,
          reason=message)  # fmt: skip
    return info


@action("alert.clear", role="manager")
def clear_alert(*, session: Session, actor: Actor, alert_id: int, reason: str = "") -> AlertInfo:
    """Close an alert whose signal is back within its objective."""
    info = repo.clear_alert(session=session, alert_id=alert_id)
    audit(session, actor, "alert.clear", "channel", info.channel_slug, alert_id=alert_id,
          signal=info.signal, reason=reason.strip())  # fmt: skip
    return info


@action("alert.acknowledge", role="annotator")
def acknowledge_alert(
    *, session: Session, actor: Actor, alert_id: int, reason: str = ""
) -> AlertInfo:
    """Say that someone is looking at an alert (it stays open until the signal recovers)."""
    info = repo.acknowledge_alert(session=session, alert_id=alert_id, who=actor.name)
    audit(session, actor, "alert.acknowledge", "channel", info.channel_slug, alert_id=alert_id,
          signal=info.signal, reason=reason.strip())  # fmt: skip
    return info
