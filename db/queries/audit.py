"""The audit trail as people read it: filtered by person, action, object and time, newest first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditEvent
from db.repo.audit import AuditEntry

# Detail keys shown in their own columns; the rest are "other details".
OWN_COLUMNS = ("before", "after", "reason")


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # a full name (channel.promote) or a noun (channel)
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditChoices:
    """What the filters can offer: the people, actions and object types seen so far."""

    actors: list[str]
    actions: list[str]
    object_types: list[str]


def audit_choices(*, session: Session) -> AuditChoices:
    def values(column: Any) -> list[str]:
        return sorted(session.scalars(select(column).distinct()))

    return AuditChoices(
        values(AuditEvent.actor), values(AuditEvent.action), values(AuditEvent.object_type)
    )


def audit_trail(*, session: Session, where: AuditFilter, limit: int = 1000) -> list[AuditEntry]:
    """Events matching every given filter, newest first, at most `limit`."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if where.actor:
        query = query.where(AuditEvent.actor == where.actor)
    if where.action:
        query = query.where(
            (AuditEvent.action == where.action)
            | AuditEvent.action.startswith(f"{where.action}.", autoescape=True)
        )
    if where.object_type:
        query = query.where(AuditEvent.object_type == where.object_type)
    if where.object_id:
        query = query.where(AuditEvent.object_id == where.object_id)
    if where.since:
        query = query.where(AuditEvent.created_at >= where.since)
    if where.until:
        query = query.where(AuditEvent.created_at < where.until)
    return [
        AuditEntry(
            e.id, e.actor, e.action, e.object_type, e.object_id, e.details or {}, e.created_at
        )
        for e in session.scalars(query)
    ]


def audit_rows(entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """One flat row per event for a table or a CSV file: nested values as JSON text."""

    def text(value: Any) -> str:
        if value is None or value in ("", {}, []):
            return ""
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)

    return [
        {
            "when (UTC)": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "who": e.actor,
            "action": e.action,
            "object": f"{e.object_type}:{e.object_id}",
            "before": text(e.details.get("before")),
            "after": text(e.details.get("after")),
            "reason": text(e.details.get("reason")),
            "details": text({k: v for k, v in e.details.items() if k not in OWN_COLUMNS}),
        }
        for e in entries
    ]
