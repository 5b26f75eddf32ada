"""Input files of logged predictions: a lone request stores its input while its model runs, and
no input is left without its row, whatever ends the request (a refused or failed row, a model
that raises); a failed write's retry stores the input again."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.ml.images import encode_png, image_digest
from core.serving.api import create_app
from core.serving.batcher import MicroBatcher
from core.serving.prediction_log import LogRefused, PredictionLog, input_path_for
from core.serving.settings import ServingSettings
from db.artifact_store import ArtifactStore
from db.engine import session_scope
from db.models import Prediction, utcnow
from db.repo.channels import get_channel
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.serving_helpers import png_of

pytest_plugins = ["tests.serving_fixtures"]


def _inputs() -> set[str]:
    root = artifact_dir()
    return {str(p.relative_to(root)) for p in (root / "inputs").rglob("*.png")}


def _logged_inputs(database_url: str) -> set[str]:
    with session_scope(database_url) as s:
        return set(
            s.scalars(select(Prediction.input_path).where(Prediction.input_path.isnot(None)))
        )


def _record(database_url: str, version_id: int) -> PredictionRecord:
    with session_scope(database_url) as s:
        channel_id = get_channel(session=s, slug="web").id
    prediction_id = new_prediction_id()
    return PredictionRecord(
        id=prediction_id, channel_id=channel_id, version_id=version_id, arm="production",
        predicted_class=1, confidence=0.9, probabilities=[0.1, 0.9], latency_ms=1.0,
        input_path=input_path_for("web", prediction_id, utcnow()), created_at=utcnow(),
    )  # fmt: skip


def _log_and_record(database_url: str, version_id: int) -> tuple[PredictionLog, PredictionRecord]:
    """A prediction log on the registry and a row for it to store."""
    return PredictionLog(database_url, artifact_dir()), _record(database_url, version_id)


def _assert_stored_with_its_row(database_url: str, record: PredictionRecord, image) -> None:
    assert (artifact_dir() / record.input_path).read_bytes() == encode_png(image)
    assert record.input_path in _logged_inputs(database_url)


def _spy_on_writer(log: PredictionLog, monkeypatch) -> list[str]:
    """The input paths the writer thread itself writes."""
    written: list[str] = []
    real = log.artifacts.write_many

    def write_many(files):
        written.extend(files)
        real(files)

    monkeypatch.setattr(log.artifacts, "write_many", write_many)
    return written


def test_a_lone_request_stores_its_input_itself_and_answers_once_both_are_stored(
    serving_registry, digits, monkeypatch
):
    url = serving_registry.database_url
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]
    upload = png_of(digits, 3)
    with TestClient(app) as client:
        written_by_writer = _spy_on_writer(client.app.state.services.predictions, monkeypatch)
        answer = client.post(
            "/v1/channels/web/predict",
            files={"file": ("x.png", upload, "image/png")},
            headers={"X-API-Key": key},
        )
        assert answer.status_code == 200
        with session_scope(url) as s:
            row = s.get(Prediction, answer.json()["prediction_id"])
            assert row is not None  # stored before the answer
            path = row.input_path
            assert row.input_digest == image_digest(digits.x[3])  # the pixels the model saw
        assert (artifact_dir() / path).read_bytes() == upload
        assert path not in written_by_writer  # the request wrote it, while the model ran


def test_an_input_whose_row_is_refused_is_removed(serving_registry, digits):
    url = serving_registry.database_url
    log, record = _log_and_record(url, serving_registry.version_ids[0])
    image = digits.x[0]
    assert log.store_input_early(record.input_path, image, None)
    assert (artifact_dir() / record.input_path).is_file()
    log.close()
    with pytest.raises(LogRefused, match="shutting down"):
        asyncio.run(log.record(record, image, input_stored=True))
    assert not (artifact_dir() / record.input_path).exists()


def test_a_failed_write_removes_an_early_input_and_its_retry_stores_it_again(
    serving_registry, digits, monkeypatch
):
    url = serving_registry.database_url
    log, record = _log_and_record(url, serving_registry.version_ids[0])
    image = digits.x[1]
    real_commit, seen = log._commit, []

    def fails_once(records, deltas, probe=False):
        if not records:  # the rollups, written alone on close
            return real_commit(records, deltas, probe)
        seen.append((artifact_dir() / record.input_path).is_file())
        if len(seen) == 1:
            raise OSError("database away for a moment")
        real_commit(records, deltas, probe)

    monkeypatch.setattr(log, "_commit", fails_once)
    try:
        assert log.store_input_early(record.input_path, image, None)
        asyncio.run(log.record(record, image, input_stored=True))
    finally:
        log.close()
    assert seen == [True, True]  # the retry wrote the file that the failure removed
    _assert_stored_with_its_row(url, record, image)


def test_an_early_write_that_fails_leaves_the_input_to_the_writer(
    serving_registry, digits, monkeypatch
):
    url = serving_registry.database_url
    log, record = _log_and_record(url, serving_registry.version_ids[0])
    image = digits.x[2]
    written_by_writer = _spy_on_writer(log, monkeypatch)

    real_write, calls = log.artifacts.write_bytes, []

    def full_for_a_moment(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(log.artifacts, "write_bytes", full_for_a_moment)
    try:
        assert not log.store_input_early(record.input_path, image, None)
        assert not (artifact_dir() / record.input_path).exists()
        asyncio.run(log.record(record, image, input_stored=False))
    finally:
        log.close()
    assert record.input_path in written_by_writer  # stored with its row after all
    _assert_stored_with_its_row(url, record, image)


def test_inputs_for_an_object_store_are_left_to_the_writer(tmp_path, digits):
    log = PredictionLog(f"sqlite:///{tmp_path / 'unused.db'}", ArtifactStore("memory://inputs"))
    try:
        assert not log.store_input_early("inputs/web/x.png", digits.x[0], None)
    finally:
        log.close()


def test_a_model_that_raises_leaves_no_input_behind(serving_registry, digits, monkeypatch):
    url = serving_registry.database_url
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]

    def broken(self, image) -> Future:
        answer: Future = Future()
        answer.set_exception(RuntimeError("the model's kernel failed"))
        return answer

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.app.state.services.predictions.flush()
        monkeypatch.setattr(MicroBatcher, "submit", broken)
        files = {"file": ("x.png", png_of(digits, 4), "image/png")}
        failed = client.post("/v1/channels/web/predict", files=files, headers={"X-API-Key": key})
        assert failed.status_code == 500
        assert client.app.state.services.predictions.flush()
    assert _inputs() == _logged_inputs(url)
