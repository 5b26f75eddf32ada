"""The promotion gate against a real SQLite registry: versions registered with holdout
prediction files (no Keras), refusal of a worse version with the failed rules, an override with
its stored reason, refusal across holdouts, a canary promoted at 100 % not judged again, and a
"canary when done" version the gate refuses."""

from __future__ import annotations

import numpy as np
import pytest

from core.actions.canary import decide_canary, start_canary_plan
from core.actions.channels import promote_version, start_canary
from core.actions.gate import GateRefused, set_gate
from core.gate import evaluate_gate
from core.ml.holdout_predictions import write_holdout_predictions
from db.engine import session_scope
from db.queries.lookups import get_channel, list_events
from db.queries.timeline import channel_timeline
from db.repo import jobs as job_repo
from db.repo.channels import ChannelSpec, create_channel
from db.repo.channels import promote_version as repo_promote
from db.repo.gate import get_gate_decision, list_gate_decisions
from db.repo.models import create_model, get_version
from db.repo.workers import register_worker
from db.settings import artifact_dir
from tests.page_helpers import open_page
from tests.registry_helpers import add_dataset, add_version

HOLDOUT = "h" * 64
N = 200  # holdout samples, 20 per class


def _version(s, model_id: int, dataset_id: int, name: str, wrong: int, holdout=HOLDOUT) -> int:
    """A version whose stored holdout predictions get the first `wrong` samples wrong."""
    y = np.arange(N) % 10
    probs = np.eye(10)[y].astype(np.float32)
    probs[:wrong] = np.eye(10)[(y[:wrong] + 1) % 10]
    folder = artifact_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    path = write_holdout_predictions(folder, np.arange(N), y, probs)
    return add_version(
        s, model_id, dataset_id, artifact_path=f"{name}/m.keras", hyperparameters={},
        evaluation={"accuracy": 1 - wrong / N, "num_test": N},
        test_predictions_path=str(path), holdout_fingerprint=holdout,
    ).id  # fmt: skip


def _channel(**wrong_by_name: int) -> dict[str, int]:
    """Channel `web` serving `prod` (10 of 200 wrong) and more versions of its model."""
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model = create_model(session=s, name="digits-classifier")
        ids = {"prod": _version(s, model.id, dataset_id, "prod", 10)}
        for name, wrong in wrong_by_name.items():
            ids[name] = _version(s, model.id, dataset_id, name, wrong)
        create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", model_id=model.id))
        repo_promote(session=s, slug="web", version_id=ids["prod"])
    return ids


def _production() -> int | None:
    with session_scope() as s:
        return get_channel(session=s, slug="web").production_version_id


def _events(action: str) -> list:
    with session_scope() as s:
        return [e for e in list_events(session=s, limit=200) if e.action == action]


def test_the_gate_refuses_a_worse_version_and_says_which_rules_failed(registry):
    ids = _channel(worse=30, better=4)  # 85 % and 98 % against production's 95 %
    with pytest.raises(GateRefused) as refused:
        promote_version(actor="mia", slug="web", version_id=ids["worse"])
    message = str(refused.value)
    assert "holdout regression: candidate 85.0% vs production 95.0% (-10.0 points" in message
    assert "override" in message
    assert _production() == ids["prod"] and _events("channel.promote") == []
    with pytest.raises(GateRefused):
        start_canary(actor="mia", slug="web", version_id=ids["worse"], traffic=0.1)
    promote_version(actor="mia", slug="web", version_id=ids["better"])
    assert _production() == ids["better"]
    (event,) = _events("channel.promote")
    assert event.details["gate"] == "passed"
    with session_scope() as s:
        decision = get_gate_decision(session=s, decision_id=event.details["gate_decision_id"])
    assert (decision.outcome, decision.failed, decision.actor) == ("passed", [], "mia")
    assert decision.holdout_fingerprint == HOLDOUT


def test_an_override_promotes_with_its_reason_and_evidence_stored(registry):
    ids = _channel(worse=30)
    with pytest.raises(GateRefused):
        promote_version(actor="mia", slug="web", version_id=ids["worse"], override_reason="  ")
    reason = "fixes the cropped-image bug; accuracy is re-measured"
    promote_version(actor="mia", slug="web", version_id=ids["worse"], override_reason=reason)
    assert _production() == ids["worse"]
    (event,) = _events("channel.promote")
    assert event.details["override_reason"].startswith("fixes the cropped-image bug")
    with session_scope() as s:
        d = get_gate_decision(session=s, decision_id=event.details["gate_decision_id"])
        entry = next(e for e in channel_timeline(session=s, slug="web") if e.kind == "serving")
    assert d.outcome == "overridden" and d.override_reason.startswith("fixes the cropped")
    assert d.failed and d.failed[0].startswith("holdout regression")
    assert (d.version_id, d.production_version_id) == (ids["worse"], ids["prod"])
    holdout = d.evidence["holdout"]
    assert holdout["candidate"]["accuracy"] == pytest.approx(0.85)
    assert holdout["production"]["accuracy"] == pytest.approx(0.95)
    per_class = holdout["candidate"]["per_class"]
    assert [c["n"] for c in per_class] == [20] * 10
    assert per_class[0]["low"] < per_class[0]["accuracy"] <= per_class[0]["high"]
    assert entry.gate_decision_id == d.id


def test_versions_scored_on_different_or_unknown_holdouts_are_refused(registry):
    ids = _channel(better=4)
    with session_scope() as s:
        dataset_id = add_dataset(s, name="digits-2")
        model_id = get_channel(session=s, slug="web").model_id
        other = _version(s, model_id, dataset_id, "other", 0, holdout="d" * 64)
        unknown = _version(s, model_id, dataset_id, "unknown", 0, holdout=None)
    with pytest.raises(GateRefused, match="same holdout: scored on different holdouts"):
        promote_version(actor="mia", slug="web", version_id=other)
    with pytest.raises(GateRefused, match="same holdout: holdout unknown for digits-classifier"):
        start_canary_plan(actor="mia", slug="web", version_id=unknown)
    start_canary_plan(actor="mia", slug="web", version_id=unknown, override_reason="trusted")
    with session_scope() as s:
        assert get_channel(session=s, slug="web").candidate_version_id == unknown
        (decision,) = list_gate_decisions(session=s, channel_id=1)
    assert decision.outcome == "overridden" and decision.holdout_fingerprint is None
    assert decision.evidence["holdout"]["production"] is None  # never set side by side
    assert ids["better"]


def test_the_floor_and_the_largest_regression_are_the_channels_to_set(registry):
    ids = _channel(slightly=12, better=4)  # 94 %: one point below production, allowed
    with session_scope() as s:
        result = evaluate_gate(session=s, slug="web", version_id=ids["slightly"])
    assert result.passed
    set_gate(actor="mia", slug="web", min_accuracy=0.97, max_regression=0.005)
    with session_scope() as s:
        result = evaluate_gate(session=s, slug="web", version_id=ids["slightly"])
        better = evaluate_gate(session=s, slug="web", version_id=ids["better"])
    assert [f.split(":")[0] for f in result.failed] == ["floor", "holdout regression"]
    assert better.passed
    with pytest.raises(Exception, match="share between 0 and 1"):
        set_gate(actor="mia", slug="web", max_regression=2.0)


def test_a_canary_promoted_at_100_percent_is_not_judged_again(registry):
    ids = _channel(better=4)
    plan = start_canary_plan(actor="mia", slug="web", version_id=ids["better"], steps="50,100")
    (started,) = _events("channel.start_canary")
    assert started.details["gate"] == "passed"
    # Rules tightened mid-canary: the running candidate is not re-gated.
    set_gate(actor="mia", slug="web", min_accuracy=0.99)
    decide_canary(actor="controller", canary_id=plan.id, step_index=0, decision="advance",
                  reason="equal arms")  # fmt: skip
    decide_canary(actor="controller", canary_id=plan.id, step_index=1, decision="promote",
                  reason="equal arms at 100 %")  # fmt: skip
    assert _production() == ids["better"]
    (promoted,) = _events("channel.promote")
    assert promoted.details["gate"].startswith("not run: candidate of the running canary")
    assert promoted.details["gate_decision_id"] == started.details["gate_decision_id"]
    with session_scope() as s:
        assert len(list_gate_decisions(session=s, channel_id=1)) == 1


def _finished_retrain(
    ids: dict[str, int], result_version_id: int | None, *, then_canary: bool, error: str = ""
):
    """A retrain of the web channel's production version, run by a worker, that produced
    `result_version_id` (or failed with `error`)."""
    with session_scope() as s:
        channel = get_channel(session=s, slug="web")
        job = job_repo.insert_job(session=s, request=job_repo.JobRequest(
            model_id=channel.model_id, dataset_id=1, architecture="seed-cnn",
            hyperparameters={"epochs": 1}, channel_id=channel.id, base_version_id=ids["prod"],
        ))  # fmt: skip
        if then_canary:
            job_repo.mark_then_canary(session=s, job_id=job.id)
        worker = register_worker(session=s, host="h", pid=1, gpus=[])
        assert job_repo.claim_next_job(session=s, worker_id=worker.id, gpus=[]).id == job.id
        job_repo.finish_job(session=s, job_id=job.id, worker_id=worker.id,
                            status="failed" if error else "succeeded", error=error or None,
                            result_version_id=result_version_id)  # fmt: skip
    return job


def test_canary_when_done_refused_by_the_gate_starts_no_canary_and_says_why(registry):
    from core.ops.controller import Controller

    ids = _channel(worse=40)
    job = _finished_retrain(ids, ids["worse"], then_canary=True)
    (change,) = Controller().hand_over_finished_retrains()
    assert "not put in a canary" in change and "holdout regression" in change
    with session_scope() as s:
        assert get_channel(session=s, slug="web").candidate_version_id is None
        (decision,) = list_gate_decisions(session=s, channel_id=1)
    assert (decision.outcome, decision.actor) == ("refused", "controller")
    (event,) = _events("gate.refuse")
    assert event.details["gate_decision_id"] == decision.id
    assert event.details["failed"] == decision.failed
    # The Loop says what became of the retrain, not only "no retrain running".
    at = open_page("loop", user="lena", role="manager")
    with session_scope() as s:
        version = get_version(session=s, version_id=ids["worse"]).version
    captions = [c.value for c in at.caption]
    assert f"last: job #{job.id} → v{version} refused by the gate" in captions
    assert any(c.startswith("holdout regression") for c in captions), captions
    links = {link.proto.label: link.proto for link in at.get("page_link")}
    assert links["Evidence"].query_string == "channel=web"
    # Another try, with other settings: the Retrain page filled in for what web serves.
    retry = links["Try again"]
    assert retry.page.endswith("retrain")
    assert retry.query_string == f"include_feedback=1&channel=web&base={ids['prod']}"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from core.ops.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_the_comparison_refuses_and_takes_an_override(registry, capsys):
    ids = _channel(worse=30)
    code, out, _ = _cli(capsys, "channel", "gate", "web", "--version-id", str(ids["worse"]))
    assert code == 1 and "gate: refuses" in out
    assert "FAIL holdout regression" in out and "holdout: hhhhhhhhhhhh (both scored on it)" in out
    assert "85.0% [" in out and "95.0% [" in out and "-10.0" in out
    code, _, err = _cli(capsys, "channel", "promote", "web", "--version-id", str(ids["worse"]))
    assert code == 2 and "the promotion gate refuses" in err and _production() == ids["prod"]
    code, _, _ = _cli(capsys, "channel", "promote", "web", "--version-id", str(ids["worse"]),
                      "--override-reason", "known good on the new camera")  # fmt: skip
    assert code == 0 and _production() == ids["worse"]
    (event,) = _events("channel.promote")
    assert event.details["override_reason"] == "known good on the new camera"
    code, out, _ = _cli(capsys, "channel", "gate-rules", "web", "--floor", "0.9",
                        "--min-slice", "50")  # fmt: skip
    assert code == 0 and "floor 0.9, max regression 0.01, min slice 50 items" in out
    code, _, err = _cli(capsys, "channel", "gate-rules", "web", "--min-slice", "many")
    assert code == 2 and "--min-slice must be a whole number" in err


def test_a_retrain_promoted_by_hand_is_not_reported_as_waiting(registry):
    """The Retrain card reports a finished retrain without a canary as ready; once its version
    serves the channel, the Production card says so and the Retrain card no longer does."""
    from core.actions.channels import promote_version
    from db.queries.loop import channel_loops

    ids = _channel(better=4)
    job = _finished_retrain(ids, ids["better"], then_canary=False)

    def last_retrain():
        with session_scope() as s:
            (loop,) = channel_loops(session=s)
        return loop.last_retrain

    assert (last_retrain().job_id, last_retrain().outcome) == (job.id, "ready")
    promote_version(actor="mia", slug="web", version_id=ids["better"], reason="looks good")
    assert last_retrain() is None


def test_a_failed_retrain_is_reported_on_a_channel_without_a_canary(registry):
    from db.queries.loop import channel_loops

    ids = _channel(better=4)
    job = _finished_retrain(ids, None, then_canary=True, error="out of memory")
    with session_scope() as s:
        (loop,) = channel_loops(session=s)
    assert loop.candidate_version_id is None
    assert (loop.last_retrain.job_id, loop.last_retrain.outcome) == (job.id, "failed")
    assert loop.last_retrain.why == ["out of memory"]
