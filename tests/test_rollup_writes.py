"""When the prediction log writes its rollups: at most every `rollup_seconds`, at once on flush,
alone when traffic stops, never dropped by a failed write; and a model that raises counts as an
error of its arm."""

from __future__ import annotations

import time
from concurrent.futures import Future
from datetime import UTC, datetime

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.serving.api import create_app
from core.serving.batcher import MicroBatcher
from core.serving.prediction_log import PredictionLog
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.models import Prediction, Rollup
from db.repo.channels import ChannelSpec, create_channel
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.registry_helpers import add_dataset, add_model_with_version
from tests.serving_helpers import png_of

pytest_plugins = ["tests.serving_fixtures"]

MINUTE = 60


def _channel() -> tuple[int, int]:
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel = create_channel(session=s, slug="web", spec=ChannelSpec(name="web"))[0]
    return channel.id, version.id


def _record(channel_id: int, version_id: int, arm: str = "production") -> PredictionRecord:
    return PredictionRecord(
        id=new_prediction_id(), channel_id=channel_id, version_id=version_id, arm=arm,
        predicted_class=3, confidence=0.8, probabilities=np.full(10, 0.1).tolist(),
        latency_ms=4.0, input_path=None, created_at=datetime.now(UTC),
    )  # fmt: skip


def _rolled_up(column: str = "requests", arm: str | None = None) -> int:
    """The minute rollups' sum of `column` (of one arm, or all)."""
    query = select(func.sum(getattr(Rollup, column))).where(Rollup.resolution_s == MINUTE)
    if arm is not None:
        query = query.where(Rollup.arm == arm)
    with session_scope() as s:
        return s.scalar(query) or 0


def _stored() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Prediction)) or 0


def test_rollups_wait_for_their_interval_and_a_flush_writes_them_at_once(registry):
    channel_id, version_id = _channel()
    log = PredictionLog(registry, artifact_dir(), rollup_seconds=3600)
    try:
        futures = [log.submit(_record(channel_id, version_id), None) for _ in range(7)]
        for future in futures:
            future.result(10)  # committed: the rows are stored …
        assert _stored() == 7
        assert _rolled_up() == 0  # … their rollups are owed until the interval ends
        assert log.flush()
        assert _rolled_up() == 7
    finally:
        log.close()
    assert _rolled_up() == 7  # nothing counted twice on close


def test_rollups_are_written_alone_when_traffic_stops(registry):
    channel_id, version_id = _channel()
    log = PredictionLog(registry, artifact_dir(), rollup_seconds=0.3)
    try:
        for future in [log.submit(_record(channel_id, version_id), None) for _ in range(5)]:
            future.result(10)
        deadline = time.monotonic() + 5
        while _rolled_up() < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _rolled_up() == 5  # no more rows came, no flush: the writer woke by itself
    finally:
        log.close()


def test_owed_rollups_survive_a_failed_write(registry, monkeypatch):
    channel_id, version_id = _channel()
    log = PredictionLog(registry, artifact_dir(), rollup_seconds=3600)
    try:
        log.submit(_record(channel_id, version_id), None).result(10)
        real_commit = log._commit
        calls = []

        def fails_once(records, deltas):
            calls.append(len(deltas))
            if len(calls) == 1:
                raise OSError("disk away for a moment")
            real_commit(records, deltas)

        monkeypatch.setattr(log, "_commit", fails_once)
        log.flush()  # the rollup write fails: the counts go back to the buffer …
        assert _rolled_up() == 0 and calls == [1]
        log.submit(_record(channel_id, version_id), None).result(10)
        assert log.flush()  # … and are written with the next one, the second row's too
        assert _rolled_up() == 2
    finally:
        log.close()


def test_a_model_that_raises_counts_as_an_error_of_its_arm(serving_registry, digits, monkeypatch):
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]
    files = {"file": ("x.png", png_of(digits, 2), "image/png")}
    with TestClient(app, raise_server_exceptions=False) as client:
        log = client.app.state.services.predictions
        assert log.flush()
        before = (_rolled_up("errors"), _rolled_up("requests"))
        ok = client.post("/v1/channels/web/predict", files=files, headers={"X-API-Key": key})
        assert ok.status_code == 200

        def broken(self, image) -> Future:
            answer: Future = Future()
            answer.set_exception(RuntimeError("the model's kernel failed"))
            return answer

        monkeypatch.setattr(MicroBatcher, "submit", broken)
        failed = client.post("/v1/channels/web/predict", files=files, headers={"X-API-Key": key})
        assert failed.status_code == 500
        assert "kernel" not in failed.text  # the client gets no internals
        assert log.flush()
    assert (_rolled_up("errors"), _rolled_up("requests")) == (before[0] + 1, before[1] + 1)
