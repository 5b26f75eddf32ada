"""A canary that decides: the controller compares the arms over each step from rollups, rolls
back a worse candidate (latency, errors, feedback accuracy), advances an equal one through the
steps to promotion, and holds on too little traffic or time, recording every decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.actions.canary import decide_canary, parse_steps, start_canary_plan
from core.actions.channels import end_canary, promote_version
from core.ops.canary import ArmEvidence, judge
from core.ops.controller import Controller
from db.engine import session_scope
from db.errors import ConflictError, RegistryError
from db.repo.audit import list_events
from db.repo.canary import list_decisions
from db.repo.channels import get_channel
from db.repo.feedback import AnnotationInput
from db.repo.rollups import RollupDelta, add_to_rollups
from tests.canary_helpers import channel_with_versions, plan, write_traffic
from tests.registry_helpers import user_feedback

STEP = timedelta(minutes=6)  # longer than the default 5 minutes per step


def _start(version_id: int, **options):
    return start_canary_plan(actor="alice", slug="web", version_id=version_id, **options)


def _decisions(channel_id: int):
    with session_scope() as s:
        return list_decisions(session=s, channel_id=channel_id)[::-1]  # oldest first


def _channel():
    with session_scope() as s:
        return get_channel(session=s, slug="web")


def _step_traffic(registry, channel_id, canary, prod_id, cand_id, *, n=120, cand_ms=5.0):
    start = canary.step_started_at + timedelta(minutes=1)
    return write_traffic(
        registry, channel_id,
        {"production": (prod_id, n, 5.0), "candidate": (cand_id, n, cand_ms)}, start,
    )  # fmt: skip


def test_an_equal_candidate_advances_through_every_step_to_promotion(registry):
    channel_id, (v1, v2, _) = channel_with_versions()
    canary = _start(v2, min_requests=100)
    assert (canary.steps, canary.min_seconds) == ([10.0, 25.0, 50.0, 100.0], 300)
    assert _channel().candidate_traffic == pytest.approx(0.10)
    controller = Controller()
    shares = []
    for step in range(4):
        current = plan(canary.id)
        assert current.step_index == step
        # At 100 % production is served nothing: its baseline is the step before.
        n_prod = 0 if step == 3 else 120
        start = current.step_started_at + timedelta(minutes=1)
        write_traffic(registry, channel_id, {"production": (v1, n_prod, 5.0),
                                             "candidate": (v2, 120, 5.0)}, start)  # fmt: skip
        changes = controller.tick(current.step_started_at + STEP)
        assert any("canary" in line for line in changes), changes
        shares.append(_channel().candidate_traffic)
    assert shares[:3] == pytest.approx([0.25, 0.50, 1.0])
    channel = _channel()
    assert channel.production_version_id == v2 and channel.candidate_version_id is None
    assert plan(canary.id).status == "promoted"
    decisions = _decisions(channel_id)
    assert [d.decision for d in decisions] == ["advance", "advance", "advance", "promote"]
    assert all(d.reason.startswith("candidate not worse") for d in decisions)
    assert all(d.actor == "controller" for d in decisions)
    first = decisions[0].evidence
    assert first["candidate"]["requests"] == 120 and first["production"]["p95_ms"] is not None
    assert "accuracy not judged" in decisions[0].reason  # no annotated feedback: said, not passed
    with session_scope() as s:
        events = list_events(session=s, object_type="channel", object_id="web")
    promote = next(e for e in events if e.action == "channel.promote")
    assert promote.actor == "controller" and promote.details["after"] == v2
    assert sum(e.action == "canary.decide" for e in events) == 4


def test_a_much_slower_candidate_is_rolled_back(registry):
    channel_id, (v1, v2, _) = channel_with_versions()
    canary = _start(v2, min_requests=100)
    _step_traffic(registry, channel_id, canary, v1, v2, cand_ms=80.0)
    changes = Controller().tick(canary.step_started_at + STEP)
    assert any("rollback" in line for line in changes), changes
    channel = _channel()
    assert channel.candidate_version_id is None and channel.production_version_id == v1
    assert plan(canary.id).status == "rolled_back"
    (decision,) = _decisions(channel_id)
    assert decision.decision == "rollback" and "p95" in decision.reason
    assert decision.evidence["candidate"]["p95_ms"] > 50 > decision.evidence["production"]["p95_ms"]
    with session_scope() as s:
        actions = [e.action for e in list_events(session=s, object_type="channel")]
    assert "channel.end_canary" in actions


def test_a_candidate_with_more_errors_is_rolled_back(registry):
    """The API counts failed requests into the rollups' `errors`; here they are added the same
    way (add_to_rollups) next to successful traffic written through the prediction log."""
    channel_id, (v1, v2, _) = channel_with_versions()
    canary = _start(v2, min_requests=100)
    _step_traffic(registry, channel_id, canary, v1, v2)
    at = canary.step_started_at + timedelta(minutes=2)
    with session_scope() as s:
        add_to_rollups(session=s, deltas=[
            RollupDelta(channel_id, v2, "candidate", at, counts={"errors": 30}),
            RollupDelta(channel_id, v1, "production", at, counts={"errors": 1}),
        ])  # fmt: skip
    Controller().tick(canary.step_started_at + STEP)
    (decision,) = _decisions(channel_id)
    assert decision.decision == "rollback" and "error rate" in decision.reason
    assert _channel().candidate_version_id is None


def test_worse_feedback_accuracy_is_rolled_back(registry):
    from core.actions.feedback import annotate_feedback

    channel_id, (v1, v2, _) = channel_with_versions()
    canary = _start(v2, min_requests=100)
    written = _step_traffic(registry, channel_id, canary, v1, v2)
    for arm, right in (("production", True), ("candidate", False)):
        for record in written[arm][:30]:
            other = (record.predicted_class + 1) % 10
            rating, claimed = ("up", None) if right else ("down", other)
            feedback_id = user_feedback(record.id, channel_id, rating, claimed)
            verdict = (
                AnnotationInput(verdict="confirmed")
                if right
                else AnnotationInput(verdict="corrected", true_class=other, num_classes=10)
            )
            annotate_feedback(actor="ann", feedback_id=feedback_id, annotation=verdict)
    Controller().tick(canary.step_started_at + STEP)
    (decision,) = _decisions(channel_id)
    assert decision.decision == "rollback" and "accuracy" in decision.reason, decision.reason
    assert decision.evidence["candidate"]["annotated"] >= 20
    assert decision.evidence["candidate"]["accuracy_interval"][1] < 0.5


def test_too_little_traffic_or_time_holds_and_a_hold_is_recorded_once(registry):
    channel_id, (v1, v2, _) = channel_with_versions()
    canary = _start(v2, min_requests=100)
    _step_traffic(registry, channel_id, canary, v1, v2, n=30, cand_ms=500.0)  # bad but few
    controller = Controller()
    controller.tick(canary.step_started_at + STEP)
    controller.tick(canary.step_started_at + STEP + timedelta(seconds=30))
    (decision,) = _decisions(channel_id)  # the second hold of the step is not news
    assert decision.decision == "hold"
    assert "candidate 30 of 100 requests" in decision.reason
    assert "production 30 of 100 requests" in decision.reason
    channel = _channel()
    assert channel.candidate_version_id == v2 and channel.candidate_traffic == pytest.approx(0.1)
    assert plan(canary.id).step_index == 0 and plan(canary.id).status == "running"
    # Enough requests but the step is 2 minutes old: still a hold.
    _step_traffic(registry, channel_id, canary, v1, v2, n=150)
    verdict = controller.canaries.evaluate(
        plan(canary.id), _channel(), canary.step_started_at + timedelta(minutes=2)
    )
    assert verdict.decision == "hold" and "of 5 min" in verdict.reason


def test_a_canary_ended_or_promoted_by_hand_is_closed_with_a_decision(registry):
    channel_id, (v1, v2, v3) = channel_with_versions()
    canary = _start(v2)
    end_canary(actor="bob", slug="web", reason="manual rollback")
    Controller().tick()
    assert plan(canary.id).status == "rolled_back"
    second = _start(v3)
    promote_version(actor="bob", slug="web", version_id=v3, reason="promote now")
    Controller().tick()
    assert plan(second.id).status == "promoted"
    assert [d.decision for d in _decisions(channel_id)] == ["rollback", "promote"]
    assert "by hand" in _decisions(channel_id)[1].reason


def test_plan_validation_and_one_canary_per_channel(registry):
    _, (v1, v2, v3) = channel_with_versions()
    assert parse_steps("5, 20,100") == [5.0, 20.0, 100.0]
    for bad, words in (("10,5,100", "go up"), ("10,50", "last canary step must be 100"),
                       ("a,b", "must be numbers"), ("0,100", "traffic percent in")):  # fmt: skip
        with pytest.raises(RegistryError, match=words):
            _start(v2, steps=bad)
    with pytest.raises(RegistryError, match="at least 1"):
        _start(v2, min_requests=0)
    with pytest.raises(ConflictError, match="already serves"):
        _start(v1)
    canary = _start(v2, steps=[20, 100], min_seconds=60)
    assert _channel().candidate_traffic == pytest.approx(0.2)
    with pytest.raises(ConflictError, match="already runs a canary"):
        _start(v3)
    with pytest.raises(ConflictError, match="at step 1, not 2"):
        decide_canary(actor="alice", canary_id=canary.id, step_index=1, decision="hold",
                      reason="stale")  # fmt: skip
    with pytest.raises(RegistryError, match="needs a reason"):
        decide_canary(actor="alice", canary_id=canary.id, step_index=0, decision="hold",
                      reason=" ")  # fmt: skip
    with pytest.raises(RegistryError, match="needs the manager role"):
        decide_canary(actor=_viewer(), canary_id=canary.id, step_index=0, decision="promote",
                      reason="x")  # fmt: skip


def _viewer():
    from core.actions.base import Actor

    return Actor("vera", "viewer")


def test_judge_rules_on_hand_made_evidence():
    """The pure rules: tolerances and the 'not judged' states, without a database."""
    import dataclasses
    from datetime import UTC, datetime

    from db.repo.canary import CanaryInfo

    now = datetime(2026, 1, 1, tzinfo=UTC)
    p = CanaryInfo(1, 1, "web", 2, 1, [10.0, 100.0], 0, now, None, 200, 300, 0.02, 0.5,
                   "running", "alice", "", now, None)  # fmt: skip

    def arm(requests=300, errors=0, p95=10.0, annotated=0, right=0, drift="no_reference"):
        from core.ml.monitoring_stats import wilson_interval

        psi = {"drift": 0.5, "ok": 0.05}.get(drift)
        return ArmEvidence(1, requests, errors, errors / (requests + errors), p95, psi, drift,
                           annotated, right / annotated if annotated else None,
                           wilson_interval(right, annotated))  # fmt: skip

    def decide(prod, cand):
        return judge(p, prod, cand, age_s=400, min_feedback=20, psi=0.2).decision

    assert decide(arm(), arm()) == "advance"
    assert decide(arm(), arm(p95=14.0)) == "advance"  # +40 % is within +50 %
    assert decide(arm(), arm(p95=16.0)) == "rollback"
    assert decide(arm(p95=0.5), arm(p95=1.5)) == "advance"  # +1 ms: below the 2 ms slack
    assert decide(arm(errors=3), arm(errors=9)) == "advance"  # 1 % vs 2.9 %: within 2 points
    assert decide(arm(errors=3), arm(errors=30)) == "rollback"
    assert decide(arm(annotated=40, right=36), arm(annotated=40, right=30)) == "advance"
    assert decide(arm(annotated=40, right=39), arm(annotated=40, right=20)) == "rollback"
    assert decide(arm(annotated=40, right=39), arm(annotated=10, right=0)) == "advance"
    assert decide(arm(drift="ok"), arm(drift="drift")) == "rollback"
    assert decide(arm(drift="drift"), arm(drift="drift")) == "advance"  # the population moved
    assert decide(arm(requests=199), arm(p95=100.0)) == "hold"
    assert judge(p, arm(), arm(), age_s=299, min_feedback=20, psi=0.2).decision == "hold"
    last = dataclasses.replace(p, step_index=1)
    assert judge(last, arm(), arm(), age_s=400, min_feedback=20, psi=0.2).decision == "promote"
