"""Faults the serving API survives without acknowledging what it did not store: a database that
refuses writes (503 + Retry-After, /readyz red with the reason), a full prediction log buffer, and
a production artifact that does not load (fallback, per-channel readiness, an alert)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.actions.channels import promote_version as promote_action
from core.serving.api import create_app
from core.serving.prediction_log import LogRefused, PredictionLog
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.models import ROLLUP_RESOLUTIONS, Channel, Rollup, utcnow
from db.repo.alerts import open_alert_for
from db.repo.channels import get_channel, set_candidate
from db.repo.models import register_version
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.serving_helpers import count_rows, png_of

pytest_plugins = ["tests.serving_fixtures"]

PREDICT = "/v1/channels/{}/predict"
OVERRIDE = "serving fault test: the gate is not what is tested"


def post_png(client, key, data, slug="web"):
    files = {"file": ("x.png", data, "image/png")}
    return client.post(PREDICT.format(slug), files=files, headers={"X-API-Key": key})


def read_only_url(database_url: str) -> str:
    """The same SQLite file opened read-only (root ignores file modes; SQLite's mode does not)."""
    path = database_url.removeprefix("sqlite:///")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_a_database_that_refuses_writes_is_never_acknowledged(serving_registry, digits):
    url = serving_registry.database_url
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]
    with TestClient(app) as client:
        assert post_png(client, key, png_of(digits, 1)).status_code == 200
        services = client.app.state.services
        healthy_log = services.predictions
        services.predictions = PredictionLog(read_only_url(url), artifact_dir())
        before = count_rows(url)
        try:
            answers = [post_png(client, key, png_of(digits, i)) for i in range(5)]
            ready = client.get("/readyz")
        finally:
            services.predictions.close()
            services.predictions = healthy_log
        assert [a.status_code for a in answers] == [503] * 5
        assert all(a.headers["Retry-After"] == "1" for a in answers)
        assert "not stored" in answers[0].json()["detail"]
        assert count_rows(url) == before
        assert ready.status_code == 503
        assert "cannot write" in ready.json()["reason"]
        assert ready.json()["prediction_log"]["ok"] is False
        assert ready.json()["channels"]["web"]["ready"] is True  # the models are fine
        assert client.get("/readyz").status_code == 200  # the healthy writer is back


def _record(channel_id: int, version_id: int) -> PredictionRecord:
    return PredictionRecord(
        id=new_prediction_id(), channel_id=channel_id, version_id=version_id,
        arm="production", predicted_class=1, confidence=0.9, probabilities=[0.1, 0.9],
        latency_ms=1.0, input_path=None, created_at=utcnow(),
    )  # fmt: skip


def test_readiness_comes_back_with_the_database_not_with_the_next_prediction(
    serving_registry, monkeypatch
):
    """A balancer that reads /readyz sends nothing to a red API, so the log must find out by
    itself that the database writes again: an empty probe write every second."""
    url = serving_registry.database_url
    with session_scope(url) as s:
        channel_id = get_channel(session=s, slug="web").id
    log = PredictionLog(url, artifact_dir())
    real_write, down = log._sqlite.write, [True]

    def write(records, deltas, *, probe=False):
        if down[0]:
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(records, deltas, probe=probe)

    monkeypatch.setattr(log._sqlite, "write", write)
    try:
        with pytest.raises(LogRefused):
            log.submit(_record(channel_id, serving_registry.version_ids[0]), None).result(10)
        before = count_rows(url)
        time.sleep(1.5)  # probes run, and fail while the database does
        assert not log.health().ok and "disk I/O error" in log.health().error
        down[0] = False  # the database is back; no prediction comes
        deadline = time.monotonic() + 5
        while not log.health().ok and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.health().ok
        assert count_rows(url) == before  # the probe wrote nothing
    finally:
        log.close()


def test_a_full_buffer_refuses_at_once_and_keeps_what_it_took(serving_registry):
    url = serving_registry.database_url
    with session_scope(url) as s:
        channel_id = get_channel(session=s, slug="web").id
    version_id = serving_registry.version_ids[0]
    log = PredictionLog(url, artifact_dir(), max_pending=2)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the log's write waits

    async def three() -> list:
        records = [_record(channel_id, version_id) for _ in range(3)]
        tasks = [asyncio.create_task(log.record(r, None)) for r in records[:2]]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(LogRefused, match="full"):
            await log.record(records[2], None)
        assert time.monotonic() - started < 0.5  # refused without waiting
        holder.rollback()
        await asyncio.gather(*tasks)
        return records

    before = count_rows(url)
    try:
        records = asyncio.run(three())
    finally:
        holder.close()
        log.close()
    assert count_rows(url) == before + 2
    assert log.health().ok and log.rows_written == 2
    assert records


def _broken_version(root, digits, model_id: int, dataset_id: int) -> int:
    """A version whose artifact is garbage with a matching sha256: it passes the check and
    fails to load."""
    path = root / "broken" / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a keras archive")
    with session_scope() as s:
        return register_version(
            session=s, model_id=model_id, architecture="tiny-mlp", artifact_path=str(path),
            artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), hyperparameters={},
            dataset_id=dataset_id, dataset_fingerprint=digits.fingerprint,
            evaluation={"accuracy": 0.1}, history=[], framework_versions={}, device="cpu",
            train_seconds=1.0,
        ).id  # fmt: skip


def test_a_corrupt_production_artifact_falls_back_and_shows_on_the_channel(
    serving_registry, digits
):
    url, (v1, v2) = serving_registry.database_url, serving_registry.version_ids
    with session_scope(url) as s:
        web = get_channel(session=s, slug="web")
        mobile = get_channel(session=s, slug="mobile")
    broken = _broken_version(serving_registry.home, digits, web.model_id, web.dataset_id)
    # web: the broken version is promoted while v2 is its candidate -> v2 answers everything.
    # mobile: v2 then the broken version promoted (audited) -> v2, the last one that loads.
    promote_action(actor="alice", slug="mobile", version_id=v2, override_reason=OVERRIDE)
    promote_action(actor="alice", slug="mobile", version_id=broken, override_reason=OVERRIDE)
    promote_action(actor="alice", slug="web", version_id=broken, override_reason=OVERRIDE)
    with session_scope(url) as s:
        set_candidate(session=s, slug="web", version_id=v2, traffic=0.1)
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    try:
        with TestClient(app) as client:
            web_answer = post_png(client, serving_registry.keys["web"], png_of(digits, 3))
            mobile_answer = post_png(
                client, serving_registry.keys["mobile"], png_of(digits, 3), "mobile"
            )
            ready = client.get("/readyz")
        assert web_answer.status_code == 200, web_answer.text
        assert (web_answer.json()["version_id"], web_answer.json()["arm"]) == (v2, "candidate")
        assert mobile_answer.status_code == 200, mobile_answer.text
        assert mobile_answer.json()["version_id"] == v2
        assert ready.status_code == 200
        channels = ready.json()["channels"]
        assert channels["web"]["fallback"] and channels["web"]["serving_version_id"] == v2
        assert channels["mobile"]["ready"] and "could not be loaded" in channels["mobile"]["error"]
        with session_scope(url) as s:
            for channel in (web, mobile):
                alert = open_alert_for(session=s, channel_id=channel.id, signal="serving")
                assert alert is not None and f"version {broken}" in alert.message
    finally:
        with session_scope(url) as s:
            set_candidate(session=s, slug="web", version_id=None, traffic=0.0)
        promote_action(actor="alice", slug="web", version_id=v1, override_reason=OVERRIDE)
        promote_action(actor="alice", slug="mobile", version_id=v1, override_reason=OVERRIDE)


def test_one_channel_with_nothing_to_serve_does_not_turn_the_process_red(serving_registry, digits):
    url = serving_registry.database_url
    with session_scope(url) as s:
        web = get_channel(session=s, slug="web")
    broken = _broken_version(serving_registry.home, digits, web.model_id, web.dataset_id)
    promote_action(
        actor="alice", slug="empty", version_id=broken, override_reason=OVERRIDE
    )  # no earlier production
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    try:
        with TestClient(app) as client:
            ready = client.get("/readyz")
            refused = post_png(client, serving_registry.keys["empty"], png_of(digits), "empty")
            served = post_png(client, serving_registry.keys["web"], png_of(digits))
        assert ready.status_code == 200
        assert ready.json()["channels"]["empty"]["ready"] is False
        assert ready.json()["channels"]["web"]["ready"] is True
        assert refused.status_code == 503 and "could not be loaded" in refused.json()["detail"]
        assert served.status_code == 200
    finally:
        with session_scope(url) as s:  # no action takes a channel back to serving nothing
            s.get(Channel, get_channel(session=s, slug="empty").id).production_version_id = None


def _arm_totals(database_url: str, slug: str) -> tuple[int, int]:
    """Requests and errors summed over a channel's minute rollups."""
    with session_scope(database_url) as s:
        channel_id = get_channel(session=s, slug=slug).id
        totals = s.execute(
            select(func.sum(Rollup.requests), func.sum(Rollup.errors)).where(
                Rollup.channel_id == channel_id, Rollup.resolution_s == ROLLUP_RESOLUTIONS[0]
            )
        ).one()
    return totals[0] or 0, totals[1] or 0


def test_a_version_gone_between_routing_and_its_model_asks_for_a_retry_not_an_error(
    serving_registry, digits
):
    url = serving_registry.database_url
    app = create_app(url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]
    with TestClient(app) as client:
        services = client.app.state.services
        assert post_png(client, key, png_of(digits, 1)).status_code == 200
        assert services.predictions.flush()
        requests, errors = _arm_totals(url, "web")
        services.cache.channel("web").production.batcher.close()  # as a swap retires it
        gone = post_png(client, key, png_of(digits, 2))
        assert services.predictions.flush()
    assert gone.status_code == 503
    assert "retry" in gone.json()["detail"]
    assert gone.headers["Retry-After"] == "1"
    # Not the model's fault: the arm's error rate, which the canary and the SLOs judge, is clean.
    assert _arm_totals(url, "web") == (requests, errors)
