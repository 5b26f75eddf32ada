"""The promotion gate's rows: each channel's rules, the annotated-feedback slice it scores, and
the gate decisions (evidence, outcome, override) stored with the serving changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import RegistryError
from db.models import (
    GATE_OUTCOMES,
    Annotation,
    Channel,
    Feedback,
    GateDecision,
    Prediction,
    VersionTrainingItem,
)
from db.repo.lookup import get_row, must_exist

# Defaults (README, "Gated promotion"): no floor; a candidate may lose at most one point of
# accuracy against production; the feedback slice counts from 20 annotated items (fewer
# cannot tell one point from noise, so they are shown but never refuse).
DEFAULT_MIN_ACCURACY: float | None = None
DEFAULT_MAX_REGRESSION = 0.01
DEFAULT_MIN_SLICE = 20
# The slice scored is the newest this many items: two models over them stay within seconds.
MAX_SLICE_ITEMS = 2000


@dataclass(frozen=True)
class GateRules:
    min_accuracy: float | None = DEFAULT_MIN_ACCURACY
    max_regression: float = DEFAULT_MAX_REGRESSION
    min_slice: int = DEFAULT_MIN_SLICE


@dataclass(frozen=True)
class SliceItem:
    feedback_id: int
    true_class: int
    input_path: str


@dataclass(frozen=True)
class GateDecisionInfo:
    id: int
    channel_id: int
    version_id: int
    production_version_id: int | None
    action: str
    outcome: str
    holdout_fingerprint: str | None
    failed: list[str]
    evidence: dict[str, Any]
    override_reason: str
    actor: str
    created_at: datetime


def _channel(session: Session, slug: str) -> Channel:
    row = session.scalar(select(Channel).where(Channel.slug == slug))
    return must_exist(row, f"channel {slug!r}")


def gate_rules(*, session: Session, slug: str) -> GateRules:
    row = _channel(session, slug)
    return GateRules(row.gate_min_accuracy, row.gate_max_regression, row.gate_min_slice)


def check_rules(rules: GateRules) -> GateRules:
    """The rules if they make sense; a RegistryError naming the first that does not."""
    floor = rules.min_accuracy
    if floor is not None and not (isinstance(floor, int | float) and 0 <= floor <= 1):
        raise RegistryError("the gate's accuracy floor is a share between 0 and 1 (or none)")
    if not isinstance(rules.max_regression, int | float) or not 0 <= rules.max_regression <= 1:
        raise RegistryError("the gate's largest regression is a share between 0 and 1")
    if not isinstance(rules.min_slice, int) or isinstance(rules.min_slice, bool):
        raise RegistryError("the gate's minimum slice size is a whole number of items")
    if not 1 <= rules.min_slice <= 1_000_000:
        raise RegistryError("the gate's minimum slice size is between 1 and 1,000,000 items")
    return rules


def set_gate_rules(*, session: Session, slug: str, rules: GateRules) -> GateRules:
    row = _channel(session, slug)
    check_rules(rules)
    row.gate_min_accuracy = None if rules.min_accuracy is None else float(rules.min_accuracy)
    row.gate_max_regression = float(rules.max_regression)
    row.gate_min_slice = rules.min_slice
    return gate_rules(session=session, slug=slug)


def feedback_slice(
    *, session: Session, channel_id: int, version_ids: list[int], limit: int = MAX_SLICE_ITEMS
) -> list[SliceItem]:
    """The channel's confirmed or corrected feedback with a stored input image that none of
    `version_ids` trained on, newest first (at most `limit`)."""
    trained = select(VersionTrainingItem.feedback_id).where(
        VersionTrainingItem.version_id.in_(version_ids)
    )
    rows = session.execute(
        select(Feedback.id, Annotation.true_class, Prediction.input_path)
        .join(Annotation, (Annotation.feedback_id == Feedback.id) & Annotation.is_current.is_(True))
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .where(
            Feedback.channel_id == channel_id,
            Annotation.verdict.in_(("confirmed", "corrected")),
            Annotation.true_class.is_not(None),
            Prediction.input_path.is_not(None),
            Feedback.id.not_in(trained),
        )
        .order_by(Feedback.id.desc())
        .limit(limit)
    )
    return [SliceItem(f, c, p) for f, c, p in rows]


def _decision(row: GateDecision) -> GateDecisionInfo:
    return GateDecisionInfo(
        row.id, row.channel_id, row.version_id, row.production_version_id, row.action,
        row.outcome, row.holdout_fingerprint, list(row.failed or []), dict(row.evidence or {}),
        row.override_reason, row.actor, row.created_at,
    )  # fmt: skip


def add_gate_decision(
    *,
    session: Session,
    channel_id: int,
    version_id: int,
    production_version_id: int | None,
    action: str,
    outcome: str,
    holdout_fingerprint: str | None,
    failed: list[str],
    evidence: dict[str, Any],
    override_reason: str,
    actor: str,
) -> GateDecisionInfo:
    if outcome not in GATE_OUTCOMES:
        raise RegistryError(f"a gate outcome is one of {', '.join(GATE_OUTCOMES)}")
    row = GateDecision(
        channel_id=channel_id, version_id=version_id,
        production_version_id=production_version_id, action=action, outcome=outcome,
        holdout_fingerprint=holdout_fingerprint, failed=list(failed), evidence=evidence,
        override_reason=override_reason, actor=actor,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return _decision(row)


def get_gate_decision(*, session: Session, decision_id: int) -> GateDecisionInfo:
    return _decision(get_row(session, GateDecision, decision_id, "gate decision"))


def gate_decisions_by_id(*, session: Session, ids: Iterable[int]) -> dict[int, GateDecisionInfo]:
    ids = list(ids)
    if not ids:
        return {}
    rows = session.scalars(select(GateDecision).where(GateDecision.id.in_(ids)))
    return {row.id: _decision(row) for row in rows}


def list_gate_decisions(
    *, session: Session, channel_id: int, limit: int = 20
) -> list[GateDecisionInfo]:
    rows = session.scalars(
        select(GateDecision)
        .where(GateDecision.channel_id == channel_id)
        .order_by(GateDecision.id.desc())
        .limit(limit)
    )
    return [_decision(r) for r in rows]
