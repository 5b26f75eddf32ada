"""A channel's timeline: every serving change (promotions, restores, canary starts and ends, from
the audit log) and every canary decision with its reason and evidence, newest first; and the
state of a running canary, for the Channels page, the loop view and `canary status`."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditEvent, Canary, Channel, Model, ModelVersion
from db.repo.canary import CanaryInfo, DecisionInfo, list_decisions, running_canaries
from db.repo.channels import get_channel

# Audit actions that change what a channel serves.
SERVING_ACTIONS = (
    "channel.promote",
    "channel.restore",
    "channel.start_canary",
    "channel.end_canary",
    "canary.start",
    "gate.refuse",  # a serving change the promotion gate refused (the controller's hand-over)
)


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline. `production_version_id` is set when the entry made a version
    production (a promotion, a restore, a canary's promote decision): what Restore offers."""

    at: datetime
    kind: str  # "serving" or "decision"
    action: str  # the audit action, or "canary.<decision>"
    actor: str
    title: str
    reason: str = ""
    version_id: int | None = None
    production_version_id: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # The promotion gate's decision behind a promotion or canary (db.repo.gate), if any.
    gate_decision_id: int | None = None


def version_labels(session: Session, ids: AbstractSet[int]) -> dict[int, str]:
    """Version id -> "model vN"."""
    if not ids:
        return {}
    rows = session.execute(
        select(ModelVersion.id, Model.name, ModelVersion.version)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(ModelVersion.id.in_(ids))
    )
    return {vid: f"{name} v{number}" for vid, name, number in rows}


def _version(details: dict[str, Any], key: str) -> int | None:
    value = details.get(key)
    if isinstance(value, dict):
        value = value.get("version_id")
    return value if isinstance(value, int) else None


def _serving_title(action: str, details: dict[str, Any], label) -> tuple[str, int | None]:
    """(title, version concerned) of one serving audit event."""
    after = details.get("after")
    if action in ("channel.promote", "channel.restore"):
        verb = "restored" if action == "channel.restore" else "promoted"
        return f"{label(_version(details, 'after'))} {verb} to production", _version(
            details, "after"
        )
    if action == "channel.start_canary":
        share = (after or {}).get("traffic") or 0.0
        return f"{label(_version(details, 'after'))} gets {share:.0%} of traffic", _version(
            details, "after"
        )
    if action == "channel.end_canary":
        return f"canary of {label(_version(details, 'before'))} ended", _version(details, "before")
    if action == "gate.refuse":
        version = details.get("version_id")
        return f"the promotion gate refused {label(version)}", version
    steps = " → ".join(f"{s:g}" for s in details.get("steps", []))
    version = details.get("version_id")
    return f"stepped canary of {label(version)} started: {steps} %", version


def _serving_entries(session: Session, slug: str, limit: int) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.object_type == "channel",
                AuditEvent.object_id == slug,
                AuditEvent.action.in_(SERVING_ACTIONS),
            )
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


def _candidates(session: Session, decisions: list[DecisionInfo]) -> dict[int, int]:
    """canary id -> its candidate version id."""
    ids = {d.canary_id for d in decisions}
    if not ids:
        return {}
    rows = session.execute(select(Canary.id, Canary.candidate_version_id).where(Canary.id.in_(ids)))
    return dict(rows.all())


def _decision_entry(d: DecisionInfo, candidate: int | None, label) -> TimelineEntry:
    step = f"step {d.step_index + 1} ({d.traffic:.0%})"
    title = f"canary {d.decision} of {label(candidate)} at {step}"
    made_production = candidate if d.decision == "promote" else None
    return TimelineEntry(
        d.created_at, "decision", f"canary.{d.decision}", d.actor, title, d.reason,
        candidate, made_production, d.evidence,
    )  # fmt: skip


def channel_timeline(*, session: Session, slug: str, limit: int = 100) -> list[TimelineEntry]:
    """Serving changes and canary decisions of one channel, newest first."""
    channel = get_channel(session=session, slug=slug)
    events = _serving_entries(session, slug, limit)
    decisions = list_decisions(session=session, channel_id=channel.id, limit=limit)
    candidates = _candidates(session, decisions)
    ids = {
        v
        for e in events
        for v in (
            _version(e.details or {}, "after"),
            _version(e.details or {}, "before"),
            (e.details or {}).get("version_id"),
        )
        if isinstance(v, int)
    }
    ids |= set(candidates.values())  # fmt: skip
    labels = version_labels(session, ids)

    def label(version_id: int | None) -> str:
        return labels.get(version_id, f"version {version_id}") if version_id else "no version"

    entries = [_decision_entry(d, candidates.get(d.canary_id), label) for d in decisions]
    for e in events:
        details = e.details or {}
        title, version = _serving_title(e.action, details, label)
        made = version if e.action in ("channel.promote", "channel.restore") else None
        entries.append(
            TimelineEntry(
                e.created_at,
                "serving",
                e.action,
                e.actor,
                title,
                str(details.get("reason") or ""),
                version,
                made,
                gate_decision_id=details.get("gate_decision_id"),
            )  # fmt: skip
        )
    entries.sort(key=lambda t: t.at, reverse=True)
    return entries[:limit]


def served_versions(*, session: Session, slug: str) -> set[int]:
    """Every version the timeline shows as the channel's production at some time."""
    served = {
        e.production_version_id
        for e in channel_timeline(session=session, slug=slug, limit=10_000)
        if e.production_version_id is not None
    }
    current = get_channel(session=session, slug=slug).production_version_id
    return served | ({current} if current else set())


@dataclass(frozen=True)
class CanaryState:
    """A running canary and its last decision (what it is waiting for, or why it moved)."""

    canary: CanaryInfo
    candidate_label: str
    last_decision: DecisionInfo | None


def canary_states(*, session: Session) -> dict[int, CanaryState]:
    """channel id -> its running canary, for every channel that has one."""
    plans = running_canaries(session=session)
    labels = version_labels(session, {p.candidate_version_id for p in plans})
    states = {}
    for plan in plans:
        last = list_decisions(session=session, canary_id=plan.id, limit=1)
        label = labels.get(plan.candidate_version_id, "?")
        states[plan.channel_id] = CanaryState(plan, label, last[0] if last else None)
    return states


def canary_state(*, session: Session, slug: str) -> CanaryState | None:
    """The channel's running canary, or None."""
    channel_id = session.scalar(select(Channel.id).where(Channel.slug == slug))
    return canary_states(session=session).get(channel_id) if channel_id else None
