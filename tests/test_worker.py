"""The training worker: real subprocesses and the real SQLite registry, tiny training runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from core.datasets import register_builtin_dataset
from core.training.jobs import JobRequestError, enqueue_job
from db.engine import session_scope
from db.models import Feedback, Prediction, TrainingJob
from db.repo import channels, feedback, jobs, models, predictions
from db.repo.channels import ChannelSpec
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.repo.jobs import JobRequest
from db.settings import artifact_dir, resolve_artifact

QUICK = {"epochs": 1, "augmentation": False, "batch_size": 128}


def _queue(hp: dict | None = None, **kwargs):
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        model = models.get_or_create_model(session=s, name="digits-classifier")
        args = dict(
            model_id=model.id, dataset_id=dataset.id, architecture="seed-cnn",
            hyperparameters=hp or QUICK, requested_by="tester",
        )  # fmt: skip
        args.update(kwargs)
        return enqueue_job(session=s, request=JobRequest(**args))


def _start_worker(*extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core.training.worker", "--poll-interval", "0.2", *extra]
    return subprocess.Popen(cmd, env=dict(os.environ), stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout_s: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _job(job_id: int):
    with session_scope() as s:
        return jobs.get_job(session=s, job_id=job_id)


@pytest.mark.parametrize(
    ("hp", "field", "message"),
    [
        ({"epochs": 100000}, "epochs", "between 1 and 500"),
        ({"batch_size": -1}, "batch_size", "between 0 and 4096"),  # 0 = chosen for the device
        ({"learning_rate": 50.0}, "learning_rate", "between"),
        ({"learning_rate": float("nan")}, "learning_rate", "finite"),
        ({"optimizer": "magic"}, "optimizer", "must be one of"),
        ({"dropout": 0.5}, "dropout", "unknown hyperparameter"),
    ],
)
def test_absurd_hyperparameters_are_refused_and_nothing_is_queued(registry, hp, field, message):
    with pytest.raises(JobRequestError, match=message) as info:
        _queue(hp)
    assert list(info.value.field_errors) == [field]
    assert message in info.value.field_errors[field]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 0


def test_unknown_architecture_and_mismatched_base_are_refused(registry):
    with pytest.raises(JobRequestError, match="unknown architecture 'vgg'") as info:
        _queue(architecture="vgg")
    assert list(info.value.field_errors) == ["architecture"]
    with pytest.raises(JobRequestError, match="base version 42 does not exist") as info:
        _queue(base_version_id=42)
    assert list(info.value.field_errors) == ["base_version"]


def test_every_bad_field_of_a_request_is_named_at_once(registry):
    with pytest.raises(JobRequestError) as info:
        _queue(
            {"epochs": 0, "learning_rate": "fast"},
            device_request="tpu",
            note="x" * 2001,
            requested_by=" ",
        )
    errors = info.value.field_errors
    assert set(errors) == {"epochs", "learning_rate", "device_request", "note", "requested_by"}
    assert errors["device_request"].startswith("device must be one of auto, gpu, cpu")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 0


@pytest.mark.slow
def test_worker_subprocess_takes_a_job_to_a_registered_version(registry):
    job = _queue()
    proc = _start_worker("--exit-when-idle")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    done = _job(job.id)
    assert done.status == "succeeded", done.error
    with session_scope() as s:
        version = models.get_version(session=s, version_id=done.result_version_id)
        epochs = jobs.job_epochs(session=s, job_id=job.id)
        logs = [m for _, _, m in jobs.job_logs(session=s, job_id=job.id)]
    assert version.job_id == job.id and version.version == 1
    assert version.hyperparameters["epochs"] == 1 and version.device == "cpu"
    assert len(version.dataset_fingerprint) == 64 and version.train_seconds > 0
    assert {"keras", "numpy"} <= set(version.framework_versions)
    assert 0.0 <= version.accuracy <= 1.0 and version.evaluation["confusion_matrix"]
    path = resolve_artifact(version.artifact_path)
    assert path.is_file() and path.is_relative_to(artifact_dir())
    assert [e["epoch"] for e in epochs] == [1] and "val_loss" in epochs[0]
    assert any("registered digits-classifier v1" in m for m in logs)


@pytest.mark.slow
@pytest.mark.both_databases
def test_two_worker_processes_racing_run_the_job_once(registry):
    job = _queue()
    procs = [_start_worker("--exit-when-idle", "--max-jobs", "1") for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert _job(job.id).status == "succeeded"
    with session_scope() as s:
        assert len(models.list_versions(session=s)) == 1
        assert len(jobs.job_epochs(session=s, job_id=job.id)) == 1


@pytest.mark.slow
def test_cancel_stops_a_running_job_within_one_epoch(registry):
    job = _queue({"epochs": 200, "augmentation": False, "early_stopping_patience": 0})
    proc = _start_worker("--exit-when-idle")
    try:
        _wait_for(lambda: _job(job.id).current_epoch >= 1, what="the first epoch")
        with session_scope() as s:
            jobs.request_cancel(session=s, job_id=job.id)
        requested_at = _job(job.id).current_epoch
        final = _wait_for(
            lambda: (j := _job(job.id)).status != "running" and j, what="the job to stop"
        )
    finally:
        proc.wait(timeout=120)
    assert final.status == "cancelled"
    assert final.current_epoch <= requested_at + 1
    with session_scope() as s:
        assert models.list_versions(session=s) == []


@pytest.mark.slow
def test_killed_worker_leaves_its_job_lost_not_running(registry):
    job = _queue({"epochs": 300, "augmentation": False, "early_stopping_patience": 0})
    proc = _start_worker()
    try:
        _wait_for(lambda: _job(job.id).status == "running", what="the claim")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(2.5)
    with session_scope() as s:
        assert jobs.reap_lost_jobs(session=s, stale_after_s=2.0) == [job.id]
    lost = _job(job.id)
    assert lost.status == "lost" and "heartbeat" in lost.error
    with session_scope() as s:
        retry = jobs.retry_job(session=s, job_id=job.id, actor="tester")
    assert retry.status == "queued" and retry.retry_of_id == job.id


def test_a_job_whose_dataset_is_gone_fails_with_the_reason(registry, tmp_path):
    from core.training.worker import TrainingWorker, WorkerOptions
    from db.repo.datasets import DatasetRecord, register_dataset

    folder = tmp_path / "images"
    with session_scope() as s:
        ds = register_dataset(
            session=s,
            record=DatasetRecord(
                name="photos",
                source="folder",
                location=str(folder),
                class_names=["a", "b"],
                input_shape=[8, 8, 1],
                num_samples=4,
                fingerprint="0" * 64,
            ),
        )
    job = _queue(dataset_id=ds.id)
    TrainingWorker(WorkerOptions(exit_when_idle=True)).run()
    failed = _job(job.id)
    assert failed.status == "failed" and "photos" in failed.error
    assert str(folder) in failed.error or "does not exist" in failed.error


def _feedback_item(channel_id: int, version_id: int, image: np.ndarray) -> int:
    from core.ml.images import encode_png

    pid = predictions.new_prediction_id()
    rel = Path("inputs") / "web" / f"{pid}.png"
    (artifact_dir() / rel).parent.mkdir(parents=True, exist_ok=True)
    (artifact_dir() / rel).write_bytes(encode_png(image))
    with session_scope() as s:
        predictions.insert_predictions(
            session=s,
            records=[predictions.PredictionRecord(
                pid, channel_id, version_id, "production", 1, 0.6, [0.1] * 10, 3.0, str(rel)
            )],
        )  # fmt: skip
        fb = feedback.add_feedback(
            session=s,
            feedback=FeedbackInput(
                prediction_id=pid, channel_id=channel_id, rating="down", claimed_class=7
            ),
        )
        feedback.annotate(
            session=s,
            feedback_id=fb.id,
            author="ann",
            annotation=AnnotationInput(verdict="confirmed"),
        )
    return fb.id


def _spy_on_training(monkeypatch) -> list[dict]:
    """Record what each run of core.ml.training.train is given, then run it for real."""
    import core.ml.training as training

    seen: list[dict] = []
    real = training.train

    def spy(config, split, *args, **kwargs):
        extra = kwargs.get("extra_train")
        seen.append({"split": split, "extra": 0 if extra is None else len(extra[1])})
        return real(config, split, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return seen


@pytest.mark.slow
def test_holdout_is_fixed_across_seeds_and_never_trained_on_along_a_fine_tune_chain(
    registry, monkeypatch
):
    """Base (seed 1) -> fine-tune (seed 2) with annotated feedback: both scored on the
    dataset's holdout, neither trains on it, and feedback replaying a test image is left out."""
    from core.ml.datasets import load_dataset
    from core.ml.holdout import Holdout
    from core.ml.holdout_predictions import read_holdout_predictions
    from core.training.worker import TrainingWorker, WorkerOptions
    from db.repo.datasets import get_holdout_bytes

    seen = _spy_on_training(monkeypatch)
    first = _queue({**QUICK, "seed": 1})
    TrainingWorker(WorkerOptions(exit_when_idle=True)).run()
    v1 = _job(first.id).result_version_id
    with session_scope() as s:
        web, _ = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        holdout = Holdout.from_bytes(get_holdout_bytes(session=s, dataset_id=first.dataset_id))
    digits = load_dataset("digits")
    held = {digits.x[i].tobytes() for i in np.union1d(holdout.val_idx, holdout.test_idx)}
    train_i = next(i for i in range(len(digits.y)) if digits.x[i].tobytes() not in held)
    fb_id = _feedback_item(web.id, v1, digits.x[train_i])
    replayed = _feedback_item(web.id, v1, digits.x[holdout.test_idx[0]])
    gone = _feedback_item(web.id, v1, digits.x[train_i + 1])
    with session_scope() as s:
        gone_input = s.get(Prediction, s.get(Feedback, gone).prediction_id).input_path
    (artifact_dir() / gone_input).unlink()  # deleted by hand: no retrain can learn it now
    second = _queue(
        {"epochs": 1, "augmentation": False, "learning_rate": 1e-4, "seed": 2},
        base_version_id=v1, include_feedback=True,
    )  # fmt: skip
    TrainingWorker(WorkerOptions(exit_when_idle=True)).run()
    done = _job(second.id)
    assert done.status == "succeeded", done.error
    with session_scope() as s:
        base = models.get_version(session=s, version_id=v1)
        v2 = models.get_version(session=s, version_id=done.result_version_id)
        items = models.training_items_of(session=s, version_id=v2.id)
        logs = [m for _, _, m in jobs.job_logs(session=s, job_id=second.id)]
    assert base.holdout_fingerprint == v2.holdout_fingerprint == holdout.fingerprint
    held_idx = np.union1d(holdout.val_idx, holdout.test_idx)
    for run, version in zip(seen, (base, v2), strict=True):
        assert np.array_equal(run["split"].test_idx, holdout.test_idx)
        assert not np.intersect1d(run["split"].train_idx, held_idx).size
        scored = read_holdout_predictions(resolve_artifact(version.test_predictions_path))
        assert np.array_equal(scored.indices, holdout.test_idx)
        assert version.evaluation["num_test"] == len(holdout.test_idx)  # no feedback in it
    assert v2.parent_version_id == v1 and v2.feedback_samples == 1 and seen[1]["extra"] == 1
    assert [(f, c) for f, _, c in items] == [(fb_id, 7)]
    assert any(f"left out 1 feedback images identical to holdout images (feedback {replayed})"
               in m for m in logs)  # fmt: skip
    with session_scope() as s:
        replayed_row = s.get(Feedback, replayed)
        assert replayed_row.used_in_version_id is None  # never trained on …
        assert replayed_row.left_out_by_version_id == v2.id  # … and left out by this retrain
        assert s.get(Feedback, gone).left_out_by_version_id == v2.id  # so is one with no input
    assert any(f"left out feedback {gone}: its input {gone_input} is gone" in m for m in logs)
    assert _count_unused() == 0  # so it no longer waits for a retrain


def _count_unused() -> int:
    with session_scope() as s:
        return feedback.count_training_items(session=s, unused_only=True)


def test_a_retrain_needs_an_author_and_a_short_note(registry):
    with pytest.raises(JobRequestError, match="say who is asking") as info:
        _queue(requested_by="  ")
    assert list(info.value.field_errors) == ["requested_by"]
    with pytest.raises(JobRequestError, match="at most 2000 characters") as info:
        _queue(note="x" * 2001)
    assert list(info.value.field_errors) == ["note"]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 0


def test_only_an_input_no_retrain_can_read_is_unlearnable(monkeypatch):
    """A store away for a moment skips the item until the next retrain; a missing or corrupt
    input, or a class the dataset lacks, leaves it out for good."""
    import core.training.worker as worker
    from db.artifact_store import ArtifactStoreError
    from db.repo.feedback import TrainingItem

    said: list[str] = []
    runner = SimpleNamespace(log=said.append)
    failures = {
        "away.png": ArtifactStoreError("cannot read away.png: ConnectTimeoutError"),
        "gone.png": FileNotFoundError("gone.png"),
    }

    def read_bytes(path):
        if path in failures:
            raise failures[path]
        return b"not a png"

    monkeypatch.setattr(worker, "artifact_store", lambda: SimpleNamespace(read_bytes=read_bytes))

    def image_of(path: str, true_class: int = 3):
        item = TrainingItem(1, 1, true_class, path)
        return worker.JobRunner._feedback_image(runner, item, (8, 8, 1), 10)

    assert image_of("away.png") is None and "for now" in said[-1]
    for path, true_class, reason in (
        ("gone.png", 3, "is gone"),
        ("corrupt.png", 3, "cannot be read"),
        ("away.png", 12, "class 12 is not one of the dataset's"),
    ):
        with pytest.raises(worker.Unlearnable, match=reason):
            image_of(path, true_class)
