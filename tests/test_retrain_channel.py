"""Retrain from a channel in one step: fine-tunes its production version with the annotated
items, and with "canary when done" the controller puts the finished version in a canary once."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.actions.feedback import annotate_feedback
from core.actions.jobs import retrain_channel
from core.ops.controller import Controller
from db.engine import session_scope
from db.errors import ConflictError
from db.queries.lookups import get_channel, get_job, list_events
from db.repo import jobs as job_repo
from db.repo.canary import list_decisions, running_canary
from db.repo.feedback import AnnotationInput
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from db.repo.workers import register_worker
from tests.registry_helpers import (
    add_version,
    serving_channel,
    user_feedback,
)


def _channel_with_feedback(annotated: bool) -> tuple[int, int]:
    with session_scope() as s:
        model, version, channel = serving_channel(s)
        record = PredictionRecord(new_prediction_id(), channel.id, version.id, "production", 1,
                                  0.7, np.full(10, 0.1).tolist(), 3.0, None)  # fmt: skip
        insert_predictions(session=s, records=[record])
        feedback_id = user_feedback(record.id, channel.id, "down", 7, session=s)
    if annotated:
        annotate_feedback(
            actor="ann", feedback_id=feedback_id, annotation=AnnotationInput(verdict="confirmed")
        )
    return model.id, version.id


def _finish(job, model_id: int, base_id: int):
    """A worker finishes the job with a new version."""
    with session_scope() as s:
        worker = register_worker(session=s, host="h", pid=1, gpus=[])
        assert job_repo.claim_next_job(session=s, worker_id=worker.id, gpus=[]).id == job.id
        version = add_version(
            s,
            model_id,
            job.dataset_id,
            hyperparameters=job.hyperparameters,
            parent_version_id=base_id,
            job_id=job.id,
        )
        job_repo.finish_job(session=s, job_id=job.id, worker_id=worker.id, status="succeeded",
                            result_version_id=version.id)  # fmt: skip
    return version


def test_retrain_needs_annotated_feedback(registry):
    _channel_with_feedback(annotated=False)
    with pytest.raises(ConflictError, match="no annotated feedback"):
        retrain_channel(actor="mia", slug="web")


def test_retrain_fine_tunes_production_and_hands_over_to_a_canary_once(registry):
    model_id, base_id = _channel_with_feedback(annotated=True)
    job = retrain_channel(actor="mia", slug="web")
    assert (job.base_version_id, job.include_feedback, job.channel_slug) == (base_id, True, "web")
    assert job.hyperparameters["epochs"] <= 5
    controller = Controller(canary_min_requests=20, canary_min_seconds=5)  # a quick plan
    assert controller.hand_over_finished_retrains() == []  # not finished yet
    version = _finish(job, model_id, base_id)
    changes = controller.hand_over_finished_retrains()
    assert changes == [f"web: version {version.version} of job {job.id} in a canary"]
    assert controller.hand_over_finished_retrains() == []  # handed over once
    with session_scope() as s:
        channel = get_channel(session=s, slug="web")
        plan = running_canary(session=s, channel_id=channel.id)
        assert get_job(session=s, job_id=job.id).status == "succeeded"
        actions = [(e.actor, e.action) for e in list_events(session=s, limit=20)]
    assert channel.candidate_version_id == version.id and channel.candidate_traffic == 0.10
    assert (plan.min_requests, plan.min_seconds, plan.steps) == (20, 5, [10.0, 25.0, 50.0, 100.0])
    assert ("mia", "job.retrain_channel") in actions
    assert ("controller", "channel.start_canary") in actions


def test_a_canary_handed_over_in_a_pass_is_judged_after_it_started(registry, monkeypatch):
    """The gate takes seconds: the pass that starts the canary judges it at a later time."""
    from core.ops import controller as controller_module

    model_id, base_id = _channel_with_feedback(annotated=True)
    _finish(retrain_channel(actor="mia", slug="web"), model_id, base_id)
    slow_gate = controller_module.start_canary_plan

    def after_a_while(**kw):
        time.sleep(1.5)
        return slow_gate(**kw)

    monkeypatch.setattr(controller_module, "start_canary_plan", after_a_while)
    Controller().tick()
    with session_scope() as s:
        plan = running_canary(session=s, channel_id=get_channel(session=s, slug="web").id)
        (hold,) = list_decisions(session=s, canary_id=plan.id)
    assert hold.decision == "hold" and hold.evidence["step_seconds"] >= 0, hold
