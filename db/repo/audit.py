"""Audit log: who did what to which object, when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditEvent


@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    created_at: datetime


def record_event(
    *, session: Session, actor: str, action: str, object_type: str, object_id: object, **details
) -> None:
    """Add one audit row in the caller's unit of work."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            details=details,
        )
    )


def list_events(
    *,
    session: Session,
    object_type: str | None = None,
    object_id: object = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; `action` matches a full name (`channel.promote`) or a noun (`channel`)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == str(object_id))
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(
            (AuditEvent.action == action) | AuditEvent.action.startswith(f"{action}.")
        )
    return [
        AuditEntry(
            e.id, e.actor, e.action, e.object_type, e.object_id, e.details or {}, e.created_at
        )
        for e in session.scalars(query)
    ]
