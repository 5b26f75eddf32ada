"""The Monitoring page shows what the rollups hold, per arm, labelled with window and size."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from core.serving.prediction_log import PredictionLog
from db.engine import session_scope
from db.models import utcnow
from db.repo.channels import ChannelSpec, create_channel, promote_version
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.page_helpers import open_page, texts
from tests.registry_helpers import add_dataset, add_model_with_version


def _traffic(registry: str, channel_id: int, version_id: int, counts: dict[str, int]) -> None:
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    now = utcnow()
    for arm, n in counts.items():
        for i in range(n):
            probs = np.full(10, 0.02)
            probs[i % 10] = 0.82
            log.submit(
                PredictionRecord(
                    id=new_prediction_id(), channel_id=channel_id, version_id=version_id,
                    arm=arm, predicted_class=i % 10, confidence=0.82,
                    probabilities=probs.tolist(), latency_ms=4.0 + (i % 3),
                    input_path=None, created_at=now - timedelta(minutes=i % 50),
                    simulated=i % 2 == 0,
                ),
                None,
            )  # fmt: skip
    assert log.flush()
    log.close()


def test_monitoring_shows_each_arm_with_window_and_counts(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel, _ = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", kind="web", dataset_id=dataset_id)
        )
        promote_version(session=s, slug="web", version_id=version.id)
    _traffic(registry, channel.id, version.id, {"production": 90, "candidate": 10})
    at = open_page("monitoring", channel="web")
    shown = texts(at)
    assert [h.value for h in at.subheader] == [
        "production · digits-classifier v1",
        "candidate · digits-classifier v1",
    ]
    assert "Last 24 h: 90 requests (45 simulated), 0 errors." in shown
    assert "Last 24 h: 10 requests (5 simulated), 0 errors." in shown
    metrics = [(m.label, m.value) for m in at.metric]
    assert ("requests", "90") in metrics and ("requests", "10") in metrics
    assert ("accuracy on annotated feedback", "—") in metrics
    assert ("error rate", "0.0%") in metrics  # the count is in the caption: a card shows it whole
    assert "Accuracy: no annotated feedback in this window." in shown


def test_monitoring_says_when_there_is_no_traffic(registry):
    with session_scope() as s:
        add_dataset(s)
        create_channel(session=s, slug="quiet", spec=ChannelSpec(name="Quiet", kind="web"))
    at = open_page("monitoring", channel="quiet")
    assert "No requests on quiet in the last 24 h." in [i.value for i in at.info]
