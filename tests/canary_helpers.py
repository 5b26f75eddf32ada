"""Builders for the canary tests: a channel serving v1 with more versions of its model, and
traffic per arm written through the real prediction log at controlled times."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from core.actions.channels import promote_version
from core.serving.prediction_log import PredictionLog
from db.engine import session_scope
from db.repo.canary import CanaryInfo, get_canary
from db.repo.channels import ChannelSpec, create_channel
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.registry_helpers import (
    add_dataset,
    add_model_with_version,
    add_version,
)


def channel_with_versions(count: int = 3, slug: str = "web") -> tuple[int, list[int]]:
    """Channel `slug` whose production is the first of `count` versions of one model
    (promoted through the action, so the timeline knows it)."""
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, first = add_model_with_version(s, dataset_id)
        ids = [first.id]
        for _ in range(count - 1):
            ids.append(add_version(s, model.id, dataset_id).id)
        channel, _ = create_channel(
            session=s, slug=slug, spec=ChannelSpec(name=slug.title(), model_id=model.id)
        )
    promote_version(actor="alice", slug=slug, version_id=ids[0], reason="first version")
    return channel.id, ids


def write_traffic(
    registry: str,
    channel_id: int,
    arms: dict[str, tuple[int, int, float]],
    start: datetime,
    spread_s: int = 240,
) -> dict[str, list[PredictionRecord]]:
    """`arms[arm] = (version id, requests, latency ms)`: requests spread over `spread_s`
    seconds from `start`, written through the prediction log (and its rollups)."""
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    written: dict[str, list[PredictionRecord]] = {}
    for arm, (version_id, count, latency) in arms.items():
        for j in range(count):
            record = PredictionRecord(
                id=new_prediction_id(), channel_id=channel_id, version_id=version_id, arm=arm,
                predicted_class=j % 10, confidence=0.9, probabilities=np.full(10, 0.1).tolist(),
                latency_ms=latency, input_path=None,
                created_at=start + timedelta(seconds=(j * spread_s) // max(count, 1)),
            )  # fmt: skip
            log.submit(record, None)
            written.setdefault(arm, []).append(record)
    assert log.flush()
    log.close()
    return written


def plan(canary_id: int) -> CanaryInfo:
    with session_scope() as s:
        return get_canary(session=s, canary_id=canary_id)
