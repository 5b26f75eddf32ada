"""A worker killed mid-epoch with no other worker alive: the controller and the Jobs page mark
its job lost (not "running" forever), and a retry on another worker completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from core.actions.jobs import retry_job
from core.datasets import register_builtin_dataset
from core.ops import controller as controller_module
from core.ops.controller import Controller
from core.training.jobs import enqueue_job
from db.engine import session_scope
from db.models import TrainingJob, utcnow
from db.queries.lookups import get_job, list_events
from db.repo import jobs as job_repo
from db.repo import models, workers
from db.repo.jobs import JobRequest
from tests.page_helpers import audit_rows, fresh_caches, open_page  # noqa: F401

STALE_S = 3.0


def _queue(epochs: int, batch_size: int = 128) -> int:
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        model = models.get_or_create_model(session=s, name="digits-classifier")
        hp = {"epochs": epochs, "augmentation": False, "batch_size": batch_size,
              "early_stopping_patience": 0}  # fmt: skip
        return enqueue_job(session=s, request=JobRequest(
            model_id=model.id, dataset_id=dataset.id, architecture="seed-cnn",
            hyperparameters=hp, requested_by="tester",
        )).id  # fmt: skip


def _job(job_id: int):
    with session_scope() as s:
        return get_job(session=s, job_id=job_id)


def _wait_for(predicate, timeout_s: float = 180.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _worker(*extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core.training.worker", "--poll-interval", "0.2", *extra]
    return subprocess.Popen(cmd, env=dict(os.environ), stderr=subprocess.DEVNULL)


def _make_stale(job_id: int, seconds: float) -> None:
    """A running job whose worker last beat `seconds` ago (as if it was killed then)."""
    with session_scope() as s:
        worker = workers.register_worker(session=s, host="gone", pid=1, gpus=[])
        assert job_repo.claim_next_job(session=s, worker_id=worker.id, gpus=[]).id == job_id
        s.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


@pytest.mark.slow
def test_killed_worker_job_is_reaped_by_one_controller_tick_and_a_retry_succeeds(registry):
    job_id = _queue(epochs=6, batch_size=16)  # small batches: epochs long enough to kill in
    proc = _worker()
    try:
        _wait_for(lambda: _job(job_id).current_epoch >= 1, what="the first epoch")
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-epoch 2: no clean-up of any kind runs
        proc.wait(timeout=30)
    assert _job(job_id).status == "running"
    controller = Controller(lost_after_s=STALE_S)
    assert f"job {job_id} marked lost" not in controller.tick()  # still within the stale time
    time.sleep(STALE_S + 0.5)
    assert f"job {job_id} marked lost" in controller.tick()
    lost = _job(job_id)
    assert lost.status == "lost" and "heartbeat" in lost.error
    with session_scope() as s:
        events = list_events(session=s, object_type="job", action="job.reap_lost", limit=5)
    assert [(e.actor, e.object_id) for e in events] == [("controller", str(job_id))]

    retry = retry_job(actor="tester", job_id=job_id, reason="worker was killed")
    assert subprocess.run(
        [sys.executable, "-m", "core.training.worker", "--exit-when-idle", "--poll-interval",
         "0.2"], env=dict(os.environ), stderr=subprocess.DEVNULL, timeout=600,
    ).returncode == 0  # fmt: skip
    done = _job(retry.id)
    assert done.status == "succeeded" and done.result_version_id is not None
    assert _job(job_id).status == "lost"  # the lost attempt stays lost


def test_a_live_worker_job_is_not_reaped(registry):
    job_id = _queue(epochs=1)
    _make_stale(job_id, seconds=1.0)
    assert Controller(lost_after_s=30.0).reap_lost_jobs() == []
    assert _job(job_id).status == "running"


def test_the_controller_looks_for_lost_jobs_between_passes(registry, monkeypatch):
    monkeypatch.setattr(controller_module, "REAP_INTERVAL_S", 0.1)
    controller = Controller(interval_s=3600.0, lost_after_s=STALE_S)
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        time.sleep(0.5)  # the first pass is over; the next is an hour away
        job_id = _queue(epochs=1)
        _make_stale(job_id, seconds=STALE_S + 5)
        _wait_for(lambda: _job(job_id).status == "lost", timeout_s=10, what="the reaping")
    finally:
        stop.set()
        runner.join(timeout=30)


def test_the_jobs_page_marks_a_vanished_workers_job_lost(registry):
    job_id = _queue(epochs=1)
    _make_stale(job_id, seconds=workers.WORKER_STALE_AFTER_S + 5)
    open_page("jobs", user="viewer-vic", role="viewer", job=job_id, expected=["Job lost"])
    assert _job(job_id).status == "lost"
    assert [r.action for r in audit_rows("viewer-vic", "job")] == ["job.reap_lost"]
