"""The controller opens an alert on M breaching buckets of the last N, clears it when the
signal recovers, treats too little traffic as neither, and posts webhooks on both."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from sqlalchemy import update

from core.ops.controller import Controller
from core.serving.prediction_log import PredictionLog
from db.engine import session_scope
from db.models import Channel, ModelVersion
from db.repo.alerts import list_alerts
from db.repo.audit import list_events
from db.repo.channels import ChannelSpec, create_channel, promote_version
from db.repo.feedback import AnnotationInput
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.repo.rollups import bucket_start
from db.settings import artifact_dir
from tests.registry_helpers import add_dataset, add_model_with_version, add_version, user_feedback

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
BUCKET_S = 300


def _channel(**slo) -> tuple[int, int]:
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel, _ = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", kind="web"))
        promote_version(session=s, slug="web", version_id=version.id)
        s.execute(update(Channel).where(Channel.id == channel.id).values(**slo))
    return channel.id, version.id


def _traffic(registry: str, channel_id: int, version_id: int, per_bucket: list[tuple]) -> None:
    """`per_bucket[i]` = (requests, latency ms) in the i-th of the last buckets before NOW."""
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    end = bucket_start(NOW, BUCKET_S)
    for i, (count, latency) in enumerate(reversed(per_bucket)):
        start = end - timedelta(seconds=BUCKET_S * (i + 1))
        for j in range(count):
            log.submit(
                PredictionRecord(
                    id=new_prediction_id(), channel_id=channel_id, version_id=version_id,
                    arm="production", predicted_class=j % 10, confidence=0.9,
                    probabilities=np.full(10, 0.1).tolist(), latency_ms=latency,
                    input_path=None, created_at=start + timedelta(seconds=j % BUCKET_S),
                ),
                None,
            )  # fmt: skip
    assert log.flush()
    log.close()


def _alerts(channel_id: int):
    with session_scope() as s:
        return list_alerts(session=s, channel_id=channel_id)


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_latency_alert_opens_on_m_of_n_and_clears_with_webhooks(registry):
    _Hook.received.clear()  # the class keeps what earlier runs (the other database) received
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    channel_id, version_id = _channel(slo_max_p95_ms=50.0, alert_m=3, alert_n=5, webhook_url=url)
    controller = Controller(bucket_s=BUCKET_S)
    # Two slow buckets of five: below M=3, nothing opens.
    _traffic(registry, channel_id, version_id, [(30, 5), (30, 5), (30, 5), (30, 80), (30, 80)])
    assert controller.tick(NOW) == []
    assert _alerts(channel_id) == []
    # A third slow bucket (the oldest fast one becomes slow): 3 of 5 breach.
    later = NOW + timedelta(seconds=BUCKET_S)
    _traffic_window(registry, channel_id, version_id, later, [(30, 80)])  # the bucket just closed
    changes = controller.tick(later)
    assert any("opened latency alert" in line for line in changes), changes
    (alert,) = _alerts(channel_id)
    assert alert.is_open and alert.signal == "latency" and alert.value > 50
    # Five fast buckets later the alert clears.
    recovery = later + timedelta(seconds=BUCKET_S * 5)
    _traffic_window(registry, channel_id, version_id, recovery, [(30, 5)] * 5)
    assert any("cleared latency alert" in line for line in controller.tick(recovery))
    (alert,) = _alerts(channel_id)
    assert not alert.is_open
    controller.webhooks.drain()
    server.shutdown()
    assert [p["event"] for p in _Hook.received] == ["alert.opened", "alert.cleared"]
    assert _Hook.received[0]["channel"] == "web" and _Hook.received[0]["signal"] == "latency"
    with session_scope() as s:
        actions = [e.action for e in list_events(session=s, object_type="channel")]
    assert "alert.open" in actions and "alert.clear" in actions


def _traffic_window(registry, channel_id, version_id, now, per_bucket):
    global NOW
    saved, NOW = NOW, now
    try:
        _traffic(registry, channel_id, version_id, per_bucket)
    finally:
        NOW = saved


def test_too_little_traffic_is_neither_breach_nor_recovery(registry):
    channel_id, version_id = _channel(slo_max_p95_ms=50.0, alert_m=1, alert_n=3)
    _traffic(registry, channel_id, version_id, [(5, 500), (5, 500), (5, 500)])  # 5 < 20 each
    controller = Controller(bucket_s=BUCKET_S)
    assert controller.tick(NOW) == []
    assert _alerts(channel_id) == []


def test_accuracy_breach_needs_the_interval_below_the_objective(registry):
    """Annotated feedback: 12 of 40 right is surely below 90 %; 35 of 40 is not surely below."""
    from core.actions.feedback import annotate_feedback

    channel_id, version_id = _channel(slo_min_accuracy=0.9, slo_min_feedback=30, alert_m=1,
                                      alert_n=1)  # fmt: skip
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    bucket = bucket_start(NOW, BUCKET_S) - timedelta(seconds=BUCKET_S)
    records = []
    for j in range(40):
        record = PredictionRecord(
            id=new_prediction_id(), channel_id=channel_id, version_id=version_id,
            arm="production", predicted_class=1, confidence=0.9,
            probabilities=np.full(10, 0.1).tolist(), latency_ms=3.0, input_path=None,
            created_at=bucket + timedelta(seconds=j),
        )  # fmt: skip
        log.submit(record, None)
        records.append(record)
    assert log.flush()
    log.close()
    for j, record in enumerate(records):
        right = j < 12
        rating, claimed = ("up", None) if right else ("down", 2)
        feedback_id = user_feedback(record.id, channel_id, rating, claimed)
        annotate_feedback(
            actor="ann", feedback_id=feedback_id, annotation=AnnotationInput(verdict="confirmed")
        )
    changes = Controller(bucket_s=BUCKET_S).tick(NOW)
    assert any("opened accuracy alert" in c for c in changes), changes
    (alert,) = _alerts(channel_id)
    assert abs(alert.value - 12 / 40) < 1e-9


def _serve_a_new_version(channel_id: int) -> int:
    """The channel's model's next version, made its production version; its id."""
    with session_scope() as s:
        channel = s.get(Channel, channel_id)
        version = add_version(
            s, channel.model_id, s.get(ModelVersion, channel.production_version_id).dataset_id
        )
        promote_version(session=s, slug=channel.slug, version_id=version.id)
    return version.id


def test_each_production_version_is_judged_on_its_own_traffic(registry):
    """An alert opened on v1 is cleared once v2 serves, v1's slow buckets open nothing on v2, and
    v2's own slow buckets open an alert that names v2."""
    channel_id, v1 = _channel(slo_max_p95_ms=50.0, alert_m=3, alert_n=5)
    controller = Controller(bucket_s=BUCKET_S)
    _traffic(registry, channel_id, v1, [(30, 80)] * 5)
    assert any("opened latency alert" in line for line in controller.tick(NOW))
    (first,) = _alerts(channel_id)
    assert first.version_id == v1 and "above 50 ms on v1 in 5 of the last 5" in first.message

    v2 = _serve_a_new_version(channel_id)
    assert controller.tick(NOW) == [
        "web: cleared latency alert: v2 replaced the version this alert was opened on; it is "
        "judged on its own traffic"
    ]
    assert not any(a.is_open for a in _alerts(channel_id))
    assert controller.tick(NOW) == []  # v1's buckets still breach, and are not v2's

    # Three slow buckets of v2's own: 3 of the last 5 (the other two are v1's, left out).
    later = NOW + timedelta(seconds=BUCKET_S * 3)
    _traffic_window(registry, channel_id, v2, later, [(30, 80)] * 3)
    assert any("opened latency alert" in line for line in controller.tick(later))
    newest = _alerts(channel_id)[0]
    assert newest.is_open and newest.version_id == v2
    assert "above 50 ms on v2 in 3 of the last 5" in newest.message
