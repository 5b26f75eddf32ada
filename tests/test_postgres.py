"""What only PostgreSQL has to prove: every migration runs (up and down) on an empty database,
a job claim skips a row another worker holds instead of waiting for it, and concurrent writers
of the same new rollup bucket neither collide on its unique key nor lose a count."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from db.engine import make_engine, session_scope
from db.migrate import alembic_config, current_revision, upgrade_database
from db.models import Base, Rollup
from db.repo import jobs, workers
from db.repo.channels import ChannelSpec, create_channel
from db.repo.rollups import RollupDelta, add_to_rollups
from tests.registry_helpers import add_dataset, add_model_with_version

pytestmark = pytest.mark.postgres


def test_a_missing_server_fails_in_ci():
    """With CI=true the PostgreSQL tests fail, not skip, where no server can start (outside CI
    the same fixture skips them with this reason)."""
    env = {**os.environ, "CI": "true", "CHANNELHUB_PG_BIN": "/nonexistent"}
    test = "tests/test_postgres.py::test_a_claim_skips_the_job_another_worker_holds"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "CI=true and no PostgreSQL server could be started" in done.stdout
    assert "/nonexistent" in done.stdout and "apt-get install -y postgresql" in done.stdout


def test_every_migration_upgrades_and_downgrades_an_empty_database(postgres_server):
    from alembic import command

    name = postgres_server.create_database()
    engine = make_engine(postgres_server.url(name))
    config = alembic_config(engine)
    try:
        upgrade_database(engine)
        head = ScriptDirectory.from_config(config).get_current_head()
        assert current_revision(engine) == head
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        command.downgrade(config, "-1")
        assert current_revision(engine) != head
        command.upgrade(config, "head")
        command.downgrade(config, "base")  # every downgrade, newest first
        assert current_revision(engine) is None
        assert inspect(engine).get_table_names() == ["alembic_version"]
        upgrade_database(engine)
        assert current_revision(engine) == head
    finally:
        engine.dispose()
        postgres_server.drop_database(name)


def _queue_two_jobs() -> tuple[list[int], list[int]]:
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, _ = add_model_with_version(s, dataset_id)
        job_ids = [
            jobs.insert_job(session=s, request=jobs.JobRequest(
                model_id=model.id, dataset_id=dataset_id, architecture="seed-cnn",
                hyperparameters={"epochs": 1},
            )).id
            for _ in range(2)
        ]  # fmt: skip
        worker_ids = [
            workers.register_worker(session=s, host="h", pid=i, gpus=[]).id for i in (1, 2)
        ]
    return job_ids, worker_ids


def test_a_claim_skips_the_job_another_worker_holds(pg_registry):
    """Worker 1's claim is still uncommitted; worker 2 gets the next job at once (SKIP LOCKED),
    where a plain claim would wait on worker 1's row lock and then lose the row."""
    job_ids, (w1, w2) = _queue_two_jobs()
    with session_scope() as first:
        held = jobs.claim_next_job(session=first, worker_id=w1, gpus=[])
        assert held.id == job_ids[0]
        got: list = []
        started = time.monotonic()

        def claim() -> None:
            with session_scope() as second:
                got.append(jobs.claim_next_job(session=second, worker_id=w2, gpus=[]))

        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(timeout=3.0)
        waited = time.monotonic() - started
        assert not thread.is_alive(), "the second claim waited for the first worker's lock"
    thread.join()
    assert got[0].id == job_ids[1] and waited < 3.0
    with session_scope() as s:
        owners = {j: jobs.get_job(session=s, job_id=j).worker_id for j in job_ids}
    assert owners == {job_ids[0]: w1, job_ids[1]: w2}


def _web_channel_and_version():
    """Channel `web` and a version of a model, for the rollup writers to count against."""
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel, _ = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", kind="web"))
    return channel.id, version


def test_concurrent_writers_of_a_new_bucket_keep_every_count(pg_registry):
    channel_id, version = _web_channel_and_version()
    writers, rounds = 4, 10
    start = datetime(2026, 1, 1, tzinfo=UTC)
    barrier, errors = threading.Barrier(writers), []

    def write() -> None:
        for i in range(rounds):  # each round a bucket no one has written yet
            delta = RollupDelta(
                channel_id, version.id, "production", start + timedelta(hours=i),
                counts={"requests": 1}, latency_sum_ms=2.0,
                histograms={"class_counts": [0, 1]},
            )  # fmt: skip
            barrier.wait()
            try:
                with session_scope() as s:
                    add_to_rollups(session=s, deltas=[delta])
            except Exception as error:  # noqa: BLE001 (the failure is what the test reports)
                errors.append(f"{type(error).__name__}: {error}"[:300])

    threads = [threading.Thread(target=write) for _ in range(writers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    with session_scope() as s:
        rows = s.scalars(select(Rollup)).all()
    assert len(rows) == rounds * 2  # one hour bucket and one minute bucket per round
    for row in rows:
        assert row.requests == writers and row.latency_sum_ms == 2.0 * writers
        assert row.class_counts == [0, writers]


def test_a_batch_of_many_buckets_is_written_in_chunks(pg_registry, monkeypatch):
    import db.repo.rollups as rollups

    monkeypatch.setattr(rollups, "KEYS_PER_STATEMENT", 7)
    channel_id, version = _web_channel_and_version()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    deltas = [
        RollupDelta(
            channel_id, version.id, arm, start + timedelta(minutes=m), counts={"requests": 1}
        )
        for m in range(30)
        for arm in ("production", "candidate")
    ]
    for _ in range(2):  # the second pass finds every row
        with session_scope() as s:
            assert add_to_rollups(session=s, deltas=deltas) == 60 + 2
    with session_scope() as s:
        rows = s.scalars(select(Rollup)).all()
    assert len(rows) == 62
    assert {(r.resolution_s, r.requests) for r in rows} == {(60, 2), (3600, 60)}
