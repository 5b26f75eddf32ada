"""The action layer against a real SQLite registry: roles, validation, one audit row per action
written in the same transaction as the change."""

from __future__ import annotations

import pytest

from core.actions import channels as channel_actions
from core.actions import feedback as feedback_actions
from core.actions import jobs as job_actions
from core.actions import models as model_actions
from core.actions.base import SYSTEM, Actor, PermissionDenied, all_actions
from db.engine import session_scope
from db.errors import ConflictError, RegistryError
from db.queries.lookups import get_channel, list_events
from db.repo import predictions
from db.repo.channels import ChannelSpec
from db.repo.feedback import AnnotationInput, FeedbackInput
from tests.registry_helpers import add_dataset, add_model_with_version, add_version

ANN = Actor("ann", "manager")


def _events(object_type: str | None = None) -> list[tuple[str, str, str]]:
    with session_scope() as s:
        rows = list_events(session=s, object_type=object_type, limit=1000)
    return [(e.actor, e.action, e.object_id) for e in reversed(rows)]


def _setup() -> tuple[int, int, int]:
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, version = add_model_with_version(s, dataset_id)
    return dataset_id, model.id, version.id


def test_every_channel_action_writes_one_audit_row_with_its_name(registry):
    dataset_id, model_id, version_id = _setup()
    web, key = channel_actions.create_channel(
        actor=ANN, slug="web", spec=ChannelSpec(name="Web", model_id=model_id)
    )
    assert key.startswith("chk_") and web.model_id == model_id
    channel_actions.update_channel(actor=ANN, slug="web", slo_min_accuracy=0.9, reason="SLO")
    channel_actions.pause_channel(actor=ANN, slug="web", reason="incident")
    channel_actions.resume_channel(actor=ANN, slug="web")
    channel_actions.rotate_channel_key(actor=Actor("root", "admin"), slug="web")
    channel_actions.promote_version(actor=ANN, slug="web", version_id=version_id)
    with session_scope() as s:
        candidate = add_version(s, model_id, dataset_id).id
    channel_actions.start_canary(actor=ANN, slug="web", version_id=candidate, traffic=0.2)
    channel_actions.end_canary(actor=ANN, slug="web", reason="enough")
    assert [a for _, a, _ in _events("channel")] == [
        "channel.create", "channel.update", "channel.pause", "channel.resume",
        "channel.rotate_key", "channel.promote", "channel.start_canary", "channel.end_canary",
    ]  # fmt: skip
    with session_scope() as s:
        update = list_events(session=s, object_type="channel", limit=8)[-2]
        assert update.action == "channel.update"
        assert update.details == {
            "before": {"slo_min_accuracy": None}, "after": {"slo_min_accuracy": 0.9},
            "reason": "SLO",
        }  # fmt: skip
        info = get_channel(session=s, slug="web")
    assert (info.name, info.slo_min_accuracy, info.candidate_version_id) == ("Web", 0.9, None)


def test_a_refused_action_changes_nothing_and_audits_only_the_refusal(registry):
    _, model_id, version_id = _setup()
    channel_actions.create_channel(
        actor=ANN, slug="web", spec=ChannelSpec(name="Web", model_id=model_id)
    )
    before = _events()
    with pytest.raises(PermissionDenied, match="needs the manager role"):
        channel_actions.promote_version(
            actor=Actor("vic", "viewer"), slug="web", version_id=version_id
        )
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        channel_actions.rotate_channel_key(actor=ANN, slug="web")
    with pytest.raises(RegistryError, match=r"in \(0, 1\]"):
        channel_actions.start_canary(actor=ANN, slug="web", version_id=version_id, traffic=2.0)
    with pytest.raises(ConflictError, match="no canary"):
        channel_actions.end_canary(actor=ANN, slug="web")
    with pytest.raises(RegistryError, match="no setting colour"):
        channel_actions.update_channel(actor=ANN, slug="web", colour="red")
    # Invalid requests leave no row; refusals by role leave exactly one access.denied row each.
    events = _events()
    assert events[: len(before)] == before
    assert sorted(events[len(before) :]) == [
        ("ann", "access.denied", "channel.rotate_key"),
        ("vic", "access.denied", "channel.promote"),
    ]
    with session_scope() as s:
        assert get_channel(session=s, slug="web").production_version_id is None


def test_an_action_joins_the_callers_unit_of_work(registry):
    _, model_id, _ = _setup()
    with pytest.raises(RuntimeError), session_scope() as s:
        channel_actions.create_channel(
            actor=ANN, session=s, slug="web", spec=ChannelSpec(name="Web")
        )
        raise RuntimeError("the caller's work fails after the action")
    assert _events("channel") == []
    model_actions.create_model(actor=ANN, name="other")
    assert _events("model") == [("ann", "model.create", _events("model")[0][2])]


def _feedback_items(channel_id: int, version_id: int, n: int) -> list[int]:
    ids = []
    for i in range(n):
        pid = predictions.new_prediction_id()
        with session_scope() as s:
            predictions.insert_predictions(
                session=s,
                records=[predictions.PredictionRecord(
                    pid, channel_id, version_id, "production", 3, 0.8, [0.1] * 10, 2.0, "in/x.png"
                )],
            )  # fmt: skip
        user = Actor("channel:web", "viewer")
        rating = "up" if i % 2 == 0 else "down"
        info = feedback_actions.submit_feedback(
            actor=user,
            feedback=FeedbackInput(
                prediction_id=pid, channel_id=channel_id, rating=rating, num_classes=10
            ),
        )
        ids.append(info.id)
    return ids


def test_feedback_submit_annotate_and_bulk_annotate(registry):
    _, model_id, version_id = _setup()
    web, _ = channel_actions.create_channel(actor=SYSTEM, slug="web", spec=ChannelSpec(name="Web"))
    ids = _feedback_items(web.id, version_id, 4)
    assert [a for _, a, _ in _events("feedback")] == ["feedback.submit"] * 4
    annotator = Actor("ann", "annotator")
    info = feedback_actions.annotate_feedback(
        actor=annotator,
        feedback_id=ids[1],
        annotation=AnnotationInput(verdict="corrected", true_class=5, note="blurry"),
    )
    assert (info.author, info.true_class) == ("ann", 5)
    # thumbs-down without a claimed class cannot be confirmed: skipped, not fatal
    result = feedback_actions.bulk_annotate(
        actor=annotator, feedback_ids=ids, annotation=AnnotationInput(verdict="confirmed")
    )
    assert result.applied == [ids[0], ids[2]] and len(result.skipped) == 2
    with session_scope() as s:
        events = list_events(session=s, object_type="feedback", limit=2)
    bulk, single = events
    assert bulk.action == "feedback.bulk_annotate" and bulk.details["feedback_ids"] == ids[0::2]
    assert single.details["after"] == {"verdict": "corrected", "true_class": 5}
    assert single.details["reason"] == "blurry"
    with pytest.raises(PermissionDenied):
        feedback_actions.annotate_feedback(
            actor=Actor("vic", "viewer"),
            feedback_id=ids[0],
            annotation=AnnotationInput(verdict="rejected"),
        )
    with pytest.raises(RegistryError, match="verdict must be one of"):
        feedback_actions.bulk_annotate(
            actor=annotator, feedback_ids=ids, annotation=AnnotationInput(verdict="maybe")
        )


def test_job_actions_enqueue_cancel_retry(registry):
    dataset_id, model_id, _ = _setup()
    job = job_actions.enqueue_retrain(
        actor=ANN, model_id=model_id, dataset_id=dataset_id, architecture="seed-cnn",
        hyperparameters={"epochs": 1}, note="try",
    )  # fmt: skip
    assert (job.status, job.requested_by) == ("queued", "ann")
    cancelled = job_actions.cancel_job(actor=ANN, job_id=job.id, reason="wrong data")
    assert cancelled.status == "cancelled"
    again = job_actions.retry_job(actor=ANN, job_id=job.id)
    assert again.retry_of_id == job.id and again.requested_by == "ann"
    assert [a for _, a, _ in _events("job")] == ["job.enqueue", "job.cancel", "job.retry"]


def test_every_action_declares_a_known_role_and_a_description():
    for name, spec in all_actions().items():
        assert spec.role in ("viewer", "annotator", "manager", "admin"), name
        assert spec.doc, f"{name} has no docstring"
