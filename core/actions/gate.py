"""The promotion gate inside the serving actions: `apply_gate` runs before `channel.promote` and
`channel.start_canary` change anything, stores the decision and its evidence, and refuses a worse
version unless a manager overrides with a written reason; `channel.set_gate` sets the rules.

The comparison itself (core/gate.py) loads models, so it is imported only when a gate runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit, refuse_unknown_settings
from db.engine import session_scope
from db.errors import ConflictError
from db.models import GateDecision
from db.repo import canary as canary_repo
from db.repo import channels as channel_repo
from db.repo import gate as repo
from db.repo.channels import ChannelInfo
from db.repo.gate import GateRules

GATED_ACTIONS = ("channel.promote", "channel.start_canary")


class GateRefused(ConflictError):
    """The gate refused the serving change; `result` holds its evidence (core.gate.GateResult)."""

    def __init__(self, message: str, result: Any, action_name: str) -> None:
        super().__init__(message)
        self.result = result
        self.action_name = action_name


def _canary_start_decision(session: Session, channel_id: int, version_id: int) -> int | None:
    """The gate decision that let `version_id` into its canary on this channel, if stored."""
    return session.scalar(
        select(GateDecision.id)
        .where(
            GateDecision.channel_id == channel_id,
            GateDecision.version_id == version_id,
            GateDecision.action == "channel.start_canary",
            GateDecision.outcome.in_(("passed", "overridden")),
        )
        .order_by(GateDecision.id.desc())
        .limit(1)
    )


def gate_exemption(
    session: Session, channel: ChannelInfo, version_id: int, action_name: str
) -> tuple[str, int | None] | None:
    """(why the gate does not run, the earlier decision it relies on) or None when it runs.

    A running stepped canary's candidate passed the gate when the canary started: its next
    steps and its promotion at 100 % are not judged again."""
    plan = canary_repo.running_canary(session=session, channel_id=channel.id)
    if plan is not None and plan.candidate_version_id == version_id:
        earlier = _canary_start_decision(session, channel.id, version_id)
        return f"candidate of the running canary {plan.id}, gated at its start", earlier
    if action_name == "channel.start_canary" and version_id == channel.candidate_version_id:
        return "already the candidate: only its traffic share changes", None
    return None


def apply_gate(
    session: Session,
    actor: Actor,
    slug: str,
    version_id: int,
    action_name: str,
    override_reason: str = "",
) -> dict[str, Any]:
    """Judge making `version_id` serve on `slug`; returns the audit details that reference the
    stored decision. Raises GateRefused when it fails and no override reason is given."""
    channel = channel_repo.get_channel(session=session, slug=slug)
    exempt = gate_exemption(session, channel, version_id, action_name)
    if exempt is not None:
        why, earlier = exempt
        return {"gate": f"not run: {why}", "gate_decision_id": earlier}
    from core.gate import evaluate_gate, refusal_message

    result = evaluate_gate(session=session, slug=slug, version_id=version_id)
    override = (override_reason or "").strip()
    if not result.passed and not override:
        raise GateRefused(refusal_message(result), result, action_name)
    outcome = "passed" if result.passed else "overridden"
    decision = _store(session, actor, result, action_name, outcome, override if override else "")
    return {"gate": outcome, "gate_decision_id": decision.id}


def _store(session: Session, actor: Actor, result: Any, action_name: str, outcome: str,
           override: str) -> repo.GateDecisionInfo:  # fmt: skip
    channel = channel_repo.get_channel(session=session, slug=result.slug)
    return repo.add_gate_decision(
        session=session, channel_id=channel.id, version_id=result.candidate.id,
        production_version_id=result.production.id if result.production else None,
        action=action_name, outcome=outcome, holdout_fingerprint=result.holdout_fingerprint,
        failed=result.failed, evidence=result.evidence, override_reason=override,
        actor=actor.name,
    )  # fmt: skip


def record_gate_refusal(actor: Actor, refused: GateRefused) -> int:
    """Store a refusal and audit it (`gate.refuse`) in a transaction of its own, after the
    refused action rolled back; the controller does this for "canary when done"."""
    with session_scope() as s:
        decision = _store(s, actor, refused.result, refused.action_name, "refused", "")
        audit(
            s, actor, "gate.refuse", "channel", refused.result.slug,
            gate_decision_id=decision.id, version_id=refused.result.candidate.id,
            refused_action=refused.action_name, failed=refused.result.failed, reason=str(refused),
        )  # fmt: skip
    return decision.id


@action("channel.set_gate", role="manager")
def set_gate(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    reason: str = "",
    **values: Any,
) -> GateRules:
    """Change a channel's promotion gate: min_accuracy (floor, None = none), max_regression
    (share), min_slice (items); fields left out keep their value."""
    refuse_unknown_settings(values, ("min_accuracy", "max_regression", "min_slice"), "the gate")
    before = repo.gate_rules(session=session, slug=slug)
    wanted = GateRules(**{**before.__dict__, **values})
    after = repo.set_gate_rules(session=session, slug=slug, rules=wanted)
    audit(
        session, actor, "channel.set_gate", "channel", slug,
        before=before.__dict__, after=after.__dict__, reason=reason.strip(),
    )  # fmt: skip
    return after


def preview_gate(*, session: Session, slug: str, version_id: int, action_name: str) -> dict:
    """What the gate would say about `version_id` now, without changing anything (pages and
    the CLI show it before confirming): {"exempt": why or None, "passed", "failed",
    "evidence"}; JSON-ready, so pages may cache it."""
    channel = channel_repo.get_channel(session=session, slug=slug)
    exempt = gate_exemption(session, channel, version_id, action_name)
    if exempt is not None:
        return {"exempt": exempt[0], "passed": True, "failed": [], "evidence": {}}
    from core.gate import evaluate_gate

    result = evaluate_gate(session=session, slug=slug, version_id=version_id)
    return {"exempt": None, "passed": result.passed, "failed": result.failed,
            "evidence": result.evidence}  # fmt: skip
