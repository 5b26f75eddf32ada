"""Rollups written with the prediction log equal an aggregate of the raw rows they summarise."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from core.ml import monitoring_stats as stats
from core.serving.prediction_log import PredictionLog
from db.engine import session_scope
from db.models import ROLLUP_RESOLUTIONS, Prediction, Rollup
from db.repo.channels import ChannelSpec, create_channel
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.repo.rollups import bucket_start
from db.settings import artifact_dir
from tests.registry_helpers import add_dataset, add_model_with_version

pytestmark = pytest.mark.both_databases


def _records(channel_ids: list[int], version_id: int, n: int) -> list[tuple]:
    """Mixed traffic over two channels, both arms, 3 hours (crossing hour and minute buckets)."""
    rng = random.Random(7)
    start = datetime(2026, 11, 20, 9, 58, 30, tzinfo=UTC)
    out = []
    for _ in range(n):
        probs = np.array([rng.random() for _ in range(10)])
        probs /= probs.sum()
        cls = int(probs.argmax())
        record = PredictionRecord(
            id=new_prediction_id(),
            channel_id=rng.choice(channel_ids),
            version_id=version_id,
            arm=rng.choice(["production", "candidate"]),
            predicted_class=cls,
            confidence=float(probs[cls]),
            probabilities=probs.tolist(),
            latency_ms=rng.lognormvariate(1.5, 0.8),
            input_path=None,
            created_at=start + timedelta(seconds=rng.uniform(0, 3 * 3600)),
            simulated=rng.random() < 0.3,
        )
        out.append((record, np.full((8, 8), rng.randrange(256), dtype=np.uint8)))
    return out


def test_rollups_equal_aggregate_of_raw_rows(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channels = [create_channel(session=s, slug=slug, spec=ChannelSpec(name=slug))[0].id
                    for slug in ("web", "app")]  # fmt: skip
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05, flush_rows=37)
    images = {}
    for record, image in _records(channels, version.id, 1500):
        log.submit(record, image)
        images[record.id] = image
    assert log.flush()
    log.close()

    with session_scope() as s:
        rows = s.scalars(select(Prediction)).all()
        rollups = s.scalars(select(Rollup)).all()
    assert len(rows) == 1500
    for resolution in ROLLUP_RESOLUTIONS:
        expected: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            key = (r.channel_id, r.arm, bucket_start(r.created_at, resolution))
            for name, value in (("latency", r.latency_ms), ("confidence", r.confidence),
                                ("cls", r.predicted_class), ("sim", r.simulated),
                                ("image", images[r.id])):  # fmt: skip
                expected[key][name].append(value)
        got = {(u.channel_id, u.arm, u.bucket_start): u for u in rollups
               if u.resolution_s == resolution}  # fmt: skip
        assert set(got) == set(expected)
        for key, values in expected.items():
            u = got[key]
            assert u.requests == len(values["latency"])
            assert u.simulated == sum(values["sim"])
            assert u.latency_sum_ms == sum(values["latency"]) or np.isclose(
                u.latency_sum_ms, sum(values["latency"])
            )
            assert u.latency_hist == stats.latency_histogram(values["latency"])
            assert u.confidence_hist == stats.confidence_histogram(values["confidence"])
            assert u.class_counts == stats.class_mix(values["cls"], 10)
            assert u.intensity_hist == stats.mean_intensity_histogram(values["image"])
    assert Counter(u.resolution_s for u in rollups)[3600] <= 2 * 2 * 4  # channels × arms × hours


def test_thumbs_and_verdicts_count_in_the_predictions_bucket(registry):
    """Re-annotating moves an item between right and wrong; rejecting takes it out."""
    from core.actions.feedback import annotate_feedback, submit_feedback

    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel = create_channel(session=s, slug="web", spec=ChannelSpec(name="web", kind="web"))[0]
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    records = [record for record, _ in _records([channel.id], version.id, 6)]
    for record in records:
        log.submit(record, None)
    assert log.flush()
    log.close()
    ids = []
    for record, rating in zip(records, ["up", "down", "down", "up", "down", "up"], strict=True):
        claimed = None if rating == "up" else (record.predicted_class + 1) % 10
        ids.append(
            submit_feedback(
                actor="end-user",
                feedback=FeedbackInput(
                    prediction_id=record.id,
                    channel_id=channel.id,
                    rating=rating,
                    claimed_class=claimed,
                    num_classes=10,
                ),
            ).id
        )
    annotate_feedback(
        actor="ann", feedback_id=ids[0], annotation=AnnotationInput(verdict="confirmed")
    )  # right
    annotate_feedback(
        actor="ann", feedback_id=ids[1], annotation=AnnotationInput(verdict="confirmed")
    )  # wrong
    annotate_feedback(
        actor="ann", feedback_id=ids[2], annotation=AnnotationInput(verdict="confirmed")
    )  # wrong …
    annotate_feedback(
        actor="ann",
        feedback_id=ids[2],
        annotation=AnnotationInput(verdict="corrected", true_class=records[2].predicted_class),
    )  # … then right
    annotate_feedback(
        actor="ann", feedback_id=ids[3], annotation=AnnotationInput(verdict="confirmed")
    )  # right …
    annotate_feedback(
        actor="ann", feedback_id=ids[3], annotation=AnnotationInput(verdict="rejected")
    )  # … then nothing

    def totals(resolution: int) -> tuple[int, ...]:
        with session_scope() as s:
            rows = s.scalars(select(Rollup).where(Rollup.resolution_s == resolution)).all()
        fields = ("thumbs_up", "thumbs_down", "annotated_right", "annotated_wrong")
        return tuple(sum(getattr(r, f) for r in rows) for f in fields)

    for resolution in ROLLUP_RESOLUTIONS:
        assert totals(resolution) == (3, 3, 2, 1)


def test_bulk_verdicts_count_in_each_predictions_bucket(registry):
    """A bulk verdict and accepted suggestions write their rollup changes together, once: every
    bucket at every resolution still counts what its predictions' current verdicts say."""
    from core.actions.feedback import accept_suggestions, bulk_annotate
    from db.models import Annotation, Feedback
    from tests.registry_helpers import user_feedback

    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channels = [create_channel(session=s, slug=slug, spec=ChannelSpec(name=slug))[0].id
                    for slug in ("web", "app")]  # fmt: skip
    log = PredictionLog(registry, artifact_dir(), flush_seconds=0.05)
    records = [record for record, _ in _records(channels, version.id, 40)]
    for record in records:
        log.submit(record, None)
    assert log.flush()
    log.close()
    ids = []
    for i, record in enumerate(records):
        claimed = (record.predicted_class + 1 + i % 2) % 10 if i % 3 else None
        ids.append(user_feedback(record.id, record.channel_id, "down" if i % 3 else "up", claimed))
    bulk_annotate(actor="ann", feedback_ids=ids[:25], annotation=AnnotationInput("confirmed"))
    bulk_annotate(  # re-labels some: they move from one count to the other, or leave both
        actor="ann", feedback_ids=ids[:6],
        annotation=AnnotationInput("corrected", true_class=records[0].predicted_class),
    )  # fmt: skip
    bulk_annotate(actor="ann", feedback_ids=ids[20:23], annotation=AnnotationInput("rejected"))
    accept_suggestions(actor="ann", feedback_ids=ids[23:])

    with session_scope() as s:
        current = s.execute(
            select(Prediction, Annotation.true_class)
            .join(Feedback, Feedback.prediction_id == Prediction.id)
            .join(Annotation, Annotation.feedback_id == Feedback.id)
            .where(Annotation.is_current.is_(True), Annotation.true_class.is_not(None))
        ).all()
        stored = s.scalars(select(Rollup)).all()
    assert len(current) == 37  # 40 annotated, 3 rejected
    for resolution in ROLLUP_RESOLUTIONS:
        expected: Counter = Counter()
        for p, true_class in current:
            key = (p.channel_id, p.arm, bucket_start(p.created_at, resolution))
            expected[(*key, true_class == p.predicted_class)] += 1
        got: Counter = Counter()
        for r in stored:
            if r.resolution_s == resolution:
                start = r.bucket_start.replace(tzinfo=UTC)
                got[(r.channel_id, r.arm, start, True)] += r.annotated_right
                got[(r.channel_id, r.arm, start, False)] += r.annotated_wrong
        assert +got == expected
