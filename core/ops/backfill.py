"""The demo's past week: real predictions of the served versions on holdout images, at a daily
rhythm, with one drift episode and its users' feedback, written as live traffic is.

Every prediction is the model's answer to the image (batched inference); rows, input PNGs and
rollups go through the serving API's prediction log with `created_at` in the past, and are
marked simulated. Feedback goes through the same action as the API's, annotations through the
annotators' action, so every counter the pages and the controller read stays consistent.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from core.actions.base import Actor
from core.actions.feedback import annotate_feedback, submit_feedback
from core.ops.simulator import HoldoutImages, drifted_images, feedback_for, holdout_images
from db.engine import session_scope
from db.models import Feedback, utcnow
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.repo.predictions import PredictionRecord

# Traffic peaks at 14:00 UTC and bottoms out at 02:00 at a fifth of the peak.
PEAK_HOUR_UTC = 14
NIGHT_FLOOR = 0.2
# Serving overhead around the model's own time: decode, routing, logging (lognormal, ms).
OVERHEAD_MEDIAN_MS, OVERHEAD_SIGMA = 2.5, 0.45
# Feedback is written in transactions of this many predictions: small sessions flush fast.
FEEDBACK_CHUNK = 200


@dataclass(frozen=True)
class ChannelTraffic:
    """A channel's past week: mean requests per day and the share of users who give feedback."""

    slug: str
    per_day: int
    feedback_share: float = 0.15


@dataclass(frozen=True)
class DriftEpisode:
    """The last `hours` of one channel: a new client sends `per_hour` drifted images on top of
    the usual traffic (inverted colours or heavy noise, see simulator.drifted_images)."""

    slug: str
    hours: float
    per_hour: int


@dataclass(frozen=True)
class Request:
    at: datetime
    sample: int
    drifted: bool


def daily_weight(at: datetime) -> float:
    """Relative traffic at `at`: 1 at the afternoon peak, NIGHT_FLOOR in the small hours."""
    hour = at.hour + at.minute / 60
    day = (1 + math.cos(2 * math.pi * (hour - PEAK_HOUR_UTC) / 24)) / 2
    return NIGHT_FLOOR + (1 - NIGHT_FLOOR) * day


def request_times(
    per_hour: float, start: datetime, end: datetime, rng: np.random.Generator, *, rhythm: bool
) -> list[datetime]:
    """Poisson arrivals hour by hour at `per_hour` on average, shaped by `daily_weight` when
    `rhythm` is set (else at a constant rate)."""
    mean_weight = NIGHT_FLOOR + (1 - NIGHT_FLOOR) / 2
    times, hour = [], start
    while hour < end:
        span = min(end, hour + timedelta(hours=1)) - hour
        rate = per_hour * (daily_weight(hour + span / 2) / mean_weight if rhythm else 1.0)
        count = rng.poisson(rate * span.total_seconds() / 3600)
        offsets = np.sort(rng.random(count)) * span.total_seconds()
        times += [hour + timedelta(seconds=float(s)) for s in offsets]
        hour += span
    return times


def schedule(
    traffic: ChannelTraffic,
    episode: DriftEpisode | None,
    *,
    now: datetime,
    days: float,
    num_samples: int,
    rng: np.random.Generator,
) -> list[Request]:
    """Every request of one channel over the last `days`, oldest first."""
    start = now - timedelta(days=days)
    requests = [
        Request(at, int(rng.integers(num_samples)), False)
        for at in request_times(traffic.per_day / 24, start, now, rng, rhythm=True)
    ]
    if episode is not None and episode.slug == traffic.slug:
        begin = now - timedelta(hours=episode.hours)
        # The new client runs round the clock: the episode has volume at night too.
        for at in request_times(episode.per_hour, begin, now, rng, rhythm=False):
            requests.append(Request(at, int(rng.integers(num_samples)), True))
    return sorted(requests, key=lambda r: r.at)


@dataclass(frozen=True)
class Answered:
    """A backfilled prediction with what the simulated user knew: the image's true class."""

    record: PredictionRecord
    image: np.ndarray
    truth: int


def predict_requests(
    slug: str, requests: list[Request], held: HoldoutImages, rng: np.random.Generator
) -> list[Answered]:
    """Run the channel's production version on the requested images, in batches; the
    latency is the measured model time per image plus a simulated serving overhead."""
    from core.artifacts import verified_artifact
    from core.ml.images import image_digest
    from core.ml.inference import Predictor
    from core.serving.prediction_log import input_path_for
    from db.repo.channels import get_channel
    from db.repo.models import get_version

    with session_scope() as s:
        channel = get_channel(session=s, slug=slug)
        version = get_version(session=s, version_id=channel.production_version_id)
    predictor = Predictor(verified_artifact(version), warmup_sizes=(64,))
    drifted = drifted_images(held.x, rng)
    images = np.stack([drifted[r.sample] if r.drifted else held.x[r.sample] for r in requests])
    started = time.perf_counter()
    probs = predictor.predict_batch(images)
    model_ms = (time.perf_counter() - started) * 1000 / max(len(requests), 1)
    overhead = rng.lognormal(math.log(OVERHEAD_MEDIAN_MS), OVERHEAD_SIGMA, len(requests))
    answered = []
    for request, image, p, extra in zip(requests, images, probs, overhead, strict=True):
        prediction_id = past_prediction_id(request.at)
        predicted = int(p.argmax())
        record = PredictionRecord(
            id=prediction_id, channel_id=channel.id, version_id=version.id, arm="production",
            predicted_class=predicted, confidence=float(p[predicted]),
            probabilities=[float(v) for v in p], latency_ms=model_ms + float(extra),
            input_path=input_path_for(slug, prediction_id, request.at), created_at=request.at,
            simulated=True, input_digest=image_digest(image),
        )  # fmt: skip
        answered.append(Answered(record, image, int(held.y[request.sample])))
    return answered


def past_prediction_id(at: datetime) -> str:
    """A prediction id in the API's format (ns clock + 64 random bits), dated `at`."""
    return f"{int(at.timestamp() * 1e9):016x}{os.urandom(8).hex()}"


def write_predictions(answered: list[Answered]) -> None:
    """Rows, input PNGs and rollups, through the serving API's prediction log."""
    from core.serving.prediction_log import PredictionLog
    from db.artifact_store import artifact_store
    from db.settings import database_url

    log = PredictionLog(database_url(), artifact_store(), flush_seconds=0.25, flush_rows=256)
    for item in answered:
        log.submit(item.record, item.image)
    if not log.flush(timeout=600):
        raise RuntimeError(f"the prediction log could not write the backfill: {log.last_error}")
    log.close()


def annotate_share(age: timedelta) -> float:
    """How much of the feedback the demo's reviewers have already annotated: nearly all of
    what is older than a day, half of the last day's, so the queue has recent work."""
    return 0.9 if age > timedelta(days=1) else 0.5


def verdict_for(
    rating: str, claimed: int | None, predicted: int, truth: int
) -> tuple[str, int | None]:
    """What a careful reviewer who sees the image decides: confirm a user who is right,
    correct one who rightly complained but named no class, reject a wrong claim."""
    said = predicted if rating == "up" else claimed
    if said == truth:
        return "confirmed", None
    if rating == "down" and claimed is None and predicted != truth:
        return "corrected", truth
    return "rejected", None


def send_feedback(
    slug: str, answered: list[Answered], *, share: float, num_classes: int, now: datetime,
    reviewer: Actor, seed: int,
) -> dict[str, int]:  # fmt: skip
    """Users' thumbs on the backfilled predictions (wrong answers draw complaints naming the
    right class), dated shortly after each prediction; a share annotated by `reviewer`."""
    rng = random.Random(seed)
    user = Actor(f"channel:{slug}", "viewer")
    counts = {"feedback": 0, "annotated": 0}
    for start in range(0, len(answered), FEEDBACK_CHUNK):
        with session_scope() as s:
            for item in answered[start : start + FEEDBACK_CHUNK]:
                r = item.record
                said = feedback_for(rng, r.predicted_class, item.truth, num_classes, share)
                if said is None:
                    continue
                given = FeedbackInput(r.id, r.channel_id, num_classes=num_classes, **said)
                info = submit_feedback(actor=user, session=s, feedback=given)
                at = min(now, r.created_at + timedelta(seconds=rng.uniform(5, 600)))
                s.get(Feedback, info.id).created_at = at
                counts["feedback"] += 1
                if rng.random() >= annotate_share(now - at):
                    continue
                verdict, true_class = verdict_for(
                    said["rating"], said.get("claimed_class"), r.predicted_class, item.truth
                )
                annotate_feedback(
                    actor=reviewer,
                    session=s,
                    feedback_id=info.id,
                    annotation=AnnotationInput(
                        verdict=verdict,
                        true_class=true_class,
                        tags=["demo"],
                        num_classes=num_classes,
                    ),
                )
                counts["annotated"] += 1
    return counts


def backfill(
    channels: list[ChannelTraffic],
    episode: DriftEpisode | None,
    *,
    reviewer: Actor,
    days: float = 7.0,
    now: datetime | None = None,
    seed: int = 0,
) -> dict[str, dict[str, int]]:
    """The past `days` of every channel in `channels`; returns counts per channel."""
    now = now or utcnow()
    summary = {}
    for index, traffic in enumerate(channels):
        rng = np.random.default_rng(seed * 100 + index)
        held = holdout_images(traffic.slug)
        requests = schedule(traffic, episode, now=now, days=days, num_samples=len(held.y), rng=rng)
        answered = predict_requests(traffic.slug, requests, held, rng)
        write_predictions(answered)
        counts = send_feedback(
            traffic.slug, answered, share=traffic.feedback_share, now=now, reviewer=reviewer,
            num_classes=len(held.class_names), seed=seed * 100 + index,
        )  # fmt: skip
        drifted = sum(r.drifted for r in requests)
        summary[traffic.slug] = {"predictions": len(answered), "drifted": drifted, **counts}
    return summary
