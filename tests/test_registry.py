"""Repository functions against a real SQLite file."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from db.engine import get_engine, session_scope
from db.errors import ConflictError, NotFoundError, RegistryError
from db.migrate import current_revision
from db.models import Annotation, Prediction, TrainingJob, utcnow
from db.repo import channels, feedback, jobs, models, predictions, workers
from db.repo.channels import ChannelSpec
from db.repo.feedback import AnnotationInput, FeedbackInput
from tests.registry_helpers import add_dataset, add_model_with_version, add_version

pytestmark = pytest.mark.both_databases


@pytest.mark.sqlite_only
def test_empty_database_is_upgraded_with_sqlite_pragmas(registry):
    engine = get_engine(registry)
    assert current_revision(engine) is not None
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_foreign_keys_are_enforced(registry):
    with pytest.raises(Exception, match="(?i)foreign key"):
        with session_scope() as s:
            s.add(TrainingJob(model_id=999, dataset_id=999, architecture="x", hyperparameters={}))


def test_versions_are_numbered_per_model(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, v1 = add_model_with_version(s, dataset_id)
        v2 = add_version(
            s,
            model.id,
            dataset_id,
            architecture="resnet-small",
            evaluation={"accuracy": 0.99},
            parent_version_id=v1.id,
        )
    assert (v1.version, v2.version) == (1, 2)
    with session_scope() as s:
        got = models.get_version(session=s, version_id=v2.id)
        assert got.parent_version_id == v1.id and got.accuracy == 0.99
        assert got.dataset_name == "digits"
        assert [m.num_versions for m in models.list_models(session=s)] == [2]


def test_channel_create_validates_and_keys_are_hashed(registry):
    with session_scope() as s:
        info, key = channels.create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web app", kind="web")
        )
        assert key.startswith("chk_") and info.api_key_prefix == key[:8]
        assert channels.check_api_key(session=s, slug="web", key=key)
        assert not channels.check_api_key(session=s, slug="web", key=key + "x")
        assert not channels.check_api_key(session=s, slug="web", key=None)
    for slug, kind, message in [
        ("Bad Slug", "web", "slug must be"),
        ("ok-slug", "fax", "kind must be one of"),
        ("web", "web", "already exists"),
    ]:
        with pytest.raises(RegistryError, match=message), session_scope() as s:
            channels.create_channel(session=s, slug=slug, spec=ChannelSpec(name="x", kind=kind))
    with pytest.raises(RegistryError, match="between 0 and 1"), session_scope() as s:
        channels.create_channel(
            session=s, slug="mob", spec=ChannelSpec(name="x", slo_min_accuracy=1.5)
        )


def test_rotating_a_key_invalidates_the_old_one(registry):
    with session_scope() as s:
        _, old = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
    with session_scope() as s:
        new = channels.rotate_api_key(session=s, slug="web")
    with session_scope() as s:
        assert not channels.check_api_key(session=s, slug="web", key=old)
        assert channels.check_api_key(session=s, slug="web", key=new)


def test_promote_refuses_another_models_version(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model_a, va = add_model_with_version(s, dataset_id, "a")
        _, vb = add_model_with_version(s, dataset_id, "b")
        channels.create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", model_id=model_a.id)
        )
        info = channels.promote_version(session=s, slug="web", version_id=va.id)
        assert info.production_version_id == va.id
        with pytest.raises(ConflictError, match="another model"):
            channels.promote_version(session=s, slug="web", version_id=vb.id)
        with pytest.raises(NotFoundError):
            channels.promote_version(session=s, slug="nope", version_id=va.id)


def _queue(s, **overrides):
    dataset_id = add_dataset(s)
    model, _ = add_model_with_version(s, dataset_id)
    args = dict(
        model_id=model.id, dataset_id=dataset_id, architecture="seed-cnn",
        hyperparameters={"epochs": 2},
    )  # fmt: skip
    args.update(overrides)
    return jobs.insert_job(session=s, request=jobs.JobRequest(**args))


def test_two_workers_racing_claim_a_job_exactly_once(registry):
    with session_scope() as s:
        job = _queue(s)
        w = [workers.register_worker(session=s, host="h", pid=i, gpus=[]) for i in (1, 2)]
    barrier, won = threading.Barrier(2), []

    def claim(worker_id: int) -> None:
        barrier.wait()
        with session_scope() as s:
            got = jobs.claim_next_job(session=s, worker_id=worker_id, gpus=[])
        if got:
            won.append((worker_id, got.id))

    threads = [threading.Thread(target=claim, args=(x.id,)) for x in w]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and won[0][1] == job.id
    with session_scope() as s:
        assert jobs.get_job(session=s, job_id=job.id).status == "running"


def test_gpu_job_is_not_claimed_by_a_cpu_worker(registry):
    with session_scope() as s:
        job = _queue(s, device_request="gpu")
        assert jobs.claim_next_job(session=s, worker_id=1, gpus=[]) is None
        assert workers.live_workers_for(session=s, device_request="gpu") == []
        w = workers.register_worker(session=s, host="g", pid=1, gpus=["GPU:0"])
        assert jobs.claim_next_job(session=s, worker_id=w.id, gpus=["GPU:0"]).id == job.id


def test_bad_job_references_are_refused(registry):
    with pytest.raises(RegistryError, match="device must be one of"), session_scope() as s:
        _queue(s, device_request="tpu")
    with pytest.raises(NotFoundError, match="base version 999"), session_scope() as s:
        _queue(s, base_version_id=999)
    with session_scope() as s:
        assert jobs.count_jobs(session=s) == 0


def test_cancel_queued_job_and_retry(registry):
    with session_scope() as s:
        job = _queue(s)
        cancelled = jobs.request_cancel(session=s, job_id=job.id)
        assert cancelled.status == "cancelled"
        with pytest.raises(ConflictError, match="already finished"):
            jobs.request_cancel(session=s, job_id=job.id)
        again = jobs.retry_job(session=s, job_id=job.id, actor="bob")
        assert again.status == "queued" and again.retry_of_id == job.id
        assert again.hyperparameters == {"epochs": 2}
        with pytest.raises(ConflictError, match="only failed"):
            jobs.retry_job(session=s, job_id=again.id)


def test_running_job_with_silent_worker_is_marked_lost(registry):
    with session_scope() as s:
        job = _queue(s)
        w = workers.register_worker(session=s, host="h", pid=1, gpus=[])
        jobs.claim_next_job(session=s, worker_id=w.id, gpus=[])
        assert jobs.reap_lost_jobs(session=s, stale_after_s=30) == []
        s.execute(update(TrainingJob).values(heartbeat_at=utcnow() - timedelta(seconds=60)))
        assert jobs.reap_lost_jobs(session=s, stale_after_s=30) == [job.id]
        lost = jobs.get_job(session=s, job_id=job.id)
        assert lost.status == "lost" and "heartbeat" in lost.error
        # A late report from the vanished worker cannot resurrect it.
        assert not jobs.record_epoch(
            session=s, job_id=job.id, worker_id=w.id, epoch=1, total=2, metrics={}
        )
        assert jobs.retry_job(session=s, job_id=job.id).status == "queued"


def test_epochs_and_logs_are_recorded_in_order(registry):
    with session_scope() as s:
        job = _queue(s)
        w = workers.register_worker(session=s, host="h", pid=1, gpus=[])
        jobs.claim_next_job(session=s, worker_id=w.id, gpus=[])
        for epoch in (1, 2):
            assert jobs.record_epoch(
                session=s, job_id=job.id, worker_id=w.id, epoch=epoch, total=2,
                metrics={"loss": 1.0 / epoch},
            )  # fmt: skip
            jobs.append_log(session=s, job_id=job.id, message=f"epoch {epoch}")
        assert jobs.finish_job(session=s, job_id=job.id, worker_id=w.id, status="succeeded")
        got = jobs.get_job(session=s, job_id=job.id)
        assert (got.status, got.progress, got.current_epoch) == ("succeeded", 1.0, 2)
        assert [e["loss"] for e in jobs.job_epochs(session=s, job_id=job.id)] == [1.0, 0.5]
        assert [m for _, _, m in jobs.job_logs(session=s, job_id=job.id)] == ["epoch 1", "epoch 2"]


def _prediction(s, channel_id: int, version_id: int, predicted: int = 3) -> str:
    pid = predictions.new_prediction_id()
    predictions.insert_predictions(
        session=s,
        records=[
            predictions.PredictionRecord(
                pid, channel_id, version_id, "production", predicted, 0.8, [0.1] * 10, 2.0,
                "inputs/x.png",
            )
        ],
    )  # fmt: skip
    return pid


def test_feedback_and_annotation_history(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, version = add_model_with_version(s, dataset_id)
        web, _ = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        other, _ = channels.create_channel(
            session=s, slug="mobile", spec=ChannelSpec(name="Mobile")
        )
        pid = _prediction(s, web.id, version.id)
        with pytest.raises(NotFoundError, match="does not exist on this channel"):
            feedback.add_feedback(
                session=s,
                feedback=FeedbackInput(prediction_id=pid, channel_id=other.id, rating="up"),
            )
        with pytest.raises(RegistryError, match="between 0 and 9"):
            feedback.add_feedback(
                session=s,
                feedback=FeedbackInput(
                    prediction_id=pid,
                    channel_id=web.id,
                    rating="down",
                    claimed_class=12,
                    num_classes=10,
                ),
            )
        fb = feedback.add_feedback(
            session=s,
            feedback=FeedbackInput(
                prediction_id=pid, channel_id=web.id, rating="down", claimed_class=8
            ),
        )
        assert fb.predicted_class == 3 and fb.review_status == "pending"
        first = feedback.annotate(
            session=s,
            feedback_id=fb.id,
            author="ann",
            annotation=AnnotationInput(verdict="confirmed"),
        )
        assert first.true_class == 8
        assert feedback.count_training_items(session=s, unused_only=True) == 1
        second = feedback.annotate(
            session=s,
            feedback_id=fb.id,
            author="bob",
            annotation=AnnotationInput(
                verdict="corrected", true_class=5, tags=["blurry", " blurry "]
            ),
        )
        assert second.tags == ["blurry"]
        history = feedback.annotation_history(session=s, feedback_id=fb.id)
        assert [(a.author, a.verdict, a.is_current) for a in history] == [
            ("ann", "confirmed", False),
            ("bob", "corrected", True),
        ]
        items = feedback.training_items(session=s, model_id=model.id)
        assert [(i.feedback_id, i.true_class) for i in items] == [(fb.id, 5)]
        feedback.mark_used(session=s, feedback_ids=[fb.id], version_id=version.id)
        assert feedback.count_training_items(session=s, unused_only=True) == 0
        assert feedback.count_training_items(session=s, model_id=model.id) == 1
        feedback.annotate(
            session=s,
            feedback_id=fb.id,
            author="ann",
            annotation=AnnotationInput(verdict="rejected"),
        )
        assert feedback.training_items(session=s, model_id=model.id) == []
        current = s.scalar(
            select(func.count()).select_from(Annotation).where(Annotation.is_current.is_(True))
        )
        assert current == 1


def test_bad_annotations_write_nothing(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        web, _ = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        fb = feedback.add_feedback(
            session=s,
            feedback=FeedbackInput(
                prediction_id=_prediction(s, web.id, version.id), channel_id=web.id, rating="down"
            ),
        )
    cases = [
        (dict(verdict="maybe"), "verdict must be one of"),
        (dict(verdict="corrected"), "needs the true class"),
        (dict(verdict="confirmed"), "named no class"),
        (dict(verdict="corrected", true_class=11, num_classes=10), "between 0 and 9"),
        (dict(verdict="confirmed", author=" "), "needs an author"),
    ]
    for kwargs, message in cases:
        author = kwargs.pop("author", "ann")
        with pytest.raises(RegistryError, match=message), session_scope() as s:
            annotation = AnnotationInput(**kwargs)
            feedback.annotate(session=s, feedback_id=fb.id, author=author, annotation=annotation)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Annotation)) == 0
        assert s.scalar(select(func.count()).select_from(Prediction)) == 1


def _spec(base: dict, **change) -> dict:
    return {"spec": ChannelSpec(**{**base, **change})}


def test_channel_changes_are_validated_and_write_nothing(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, version = add_model_with_version(s, dataset_id)
        channels.create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", model_id=model.id)
        )
    base = dict(name="Web", kind="web", dataset_id=None, model_id=model.id,
                slo_min_accuracy=None, slo_max_p95_ms=None)  # fmt: skip
    cases = [
        (channels.update_channel, _spec(base, slo_max_p95_ms=0), "between 0 and 600000 ms"),
        (channels.update_channel, _spec(base, slo_max_p95_ms=1e9), "between 0 and 600000 ms"),
        (channels.update_channel, _spec(base, name="  "), "needs a name"),
        (channels.update_channel, _spec(base, dataset_id=99), "dataset 99 does not exist"),
        (channels.update_channel, _spec(base, model_id=99), "model 99 does not exist"),
        (channels.set_channel_status, {"status": "sleeping"}, "'active' or 'paused'"),
        (channels.set_candidate, {"version_id": version.id, "traffic": 0.0}, r"in \(0, 1\]"),
        (channels.set_candidate, {"version_id": version.id, "traffic": 1.5}, r"in \(0, 1\]"),
        (channels.set_candidate, {"version_id": 999}, "version 999 does not exist"),
    ]
    for fn, kwargs, message in cases:
        with pytest.raises(RegistryError, match=message), session_scope() as s:
            fn(session=s, slug="web", **kwargs)
    with session_scope() as s:
        web = channels.get_channel(session=s, slug="web")
    assert (web.name, web.slo_max_p95_ms, web.status, web.candidate_version_id) == (
        "Web",
        None,
        "active",
        None,
    )


def test_datasets_and_models_refuse_bad_names(registry):
    from db.repo.datasets import DatasetRecord, register_dataset

    with session_scope() as s:
        add_dataset(s)
    bad = dict(location=None, class_names=["a"], input_shape=[1, 1, 1], num_samples=1,
               fingerprint="0" * 64)  # fmt: skip
    with pytest.raises(RegistryError, match="'digits' already exists"), session_scope() as s:
        register_dataset(session=s, record=DatasetRecord(name="digits", source="npz", **bad))
    with pytest.raises(RegistryError, match="needs a name"), session_scope() as s:
        models.create_model(session=s, name="   ")
    with session_scope() as s:
        models.create_model(session=s, name="m")
    with pytest.raises(RegistryError, match="'m' already exists"), session_scope() as s:
        models.create_model(session=s, name="m")


def test_bad_feedback_is_refused(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        web, _ = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        pid = _prediction(s, web.id, version.id)
    cases = [
        ({"rating": "meh"}, "rating must be 'up' or 'down'"),
        ({"rating": "down", "claimed_class": -1}, "claimed class must be between"),
        ({"rating": "down", "comment": "x" * 2001}, "at most 2000 characters"),
    ]
    for kwargs, message in cases:
        with pytest.raises(RegistryError, match=message), session_scope() as s:
            feedback.add_feedback(
                session=s, feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, **kwargs)
            )
    with session_scope() as s:
        assert feedback.list_pending_feedback_ids(session=s) == []
