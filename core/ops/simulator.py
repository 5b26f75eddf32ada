"""Traffic simulator: held-out images sent to a channel over HTTP, with realistic user feedback."""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx
import numpy as np

from core.ml.datasets import load_dataset, split_dataset
from core.ml.images import encode_png
from db.engine import session_scope
from db.repo.channels import get_channel
from db.repo.datasets import get_dataset
from db.repo.models import get_version
from db.settings import channel_key_from_env, channel_key_variable, resolve_artifact

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Every request says it is simulated, so the API stores it as such (see routes/predictions.py).
SIMULATED_HEADERS = {"X-ChannelHub-Simulated": "1"}
SCENARIOS = ("calm", "drift")
# In the drift scenario this share of requests carries inverted or noisy images.
DRIFT_SHARE = 0.7
MAX_RATE = 500.0
MAX_DURATION_S = 3600.0
PRAISE = ("correct, thanks", "spot on", "", "", "quick and right")
COMPLAINTS = ("wrong digit", "that is not it", "misread my image", "", "should be obvious")
NOISE = ("meh", "not sure", "", "test")


@dataclass(frozen=True)
class HeldOut:
    """Test-split samples of the channel's dataset, already PNG-encoded."""

    images: list[bytes]
    labels: list[int]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """What is sent: clean holdout images, and in a drift episode a share of drifted ones."""

    clean: HeldOut
    drifted: HeldOut | None = None
    drift_share: float = 0.0

    def pick(self, rng: random.Random) -> HeldOut:
        if self.drifted is not None and rng.random() < self.drift_share:
            return self.drifted
        return self.clean


@dataclass
class Tally:
    """Counts and latencies of one run, updated from the client threads."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    wrong: int = 0
    feedback_sent: int = 0
    feedback_failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    arms: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self, duration_s: float) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": self.failed,
            "model_wrong": self.wrong,
            "feedback_sent": self.feedback_sent,
            "feedback_failed": self.feedback_failed,
            "statuses": dict(self.statuses),
            "arms": dict(self.arms),
            "duration_s": round(duration_s, 2),
            "live_accuracy": round(1 - self.wrong / self.answered, 4) if self.answered else None,
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
        }


@dataclass(frozen=True)
class HoldoutImages:
    """The serving version's holdout: raw uint8 images (N, H, W, C) and their true labels."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]


def holdout_images(channel: str, database_url: str | None = None) -> HoldoutImages:
    """The images the production version was scored on (the samples its holdout predictions
    file names, which the drift reference is computed from); without that file, the test part
    of the dataset split as the version was trained."""
    with session_scope(database_url) as session:
        info = get_channel(session=session, slug=channel)
        version, dataset_id = None, info.dataset_id
        if info.production_version_id is not None:
            version = get_version(session=session, version_id=info.production_version_id)
            dataset_id = dataset_id or version.dataset_id
        if dataset_id is None:
            raise ValueError(f"channel {channel!r} has neither a dataset nor a production version")
        dataset = get_dataset(session=session, dataset_id=dataset_id)
    data = load_dataset(dataset.source, dataset.location)
    indices = _holdout_indices(version)
    if indices is None:
        indices = split_dataset(data, seed=version.split_seed if version else 0).test_idx
    return HoldoutImages(data.x[indices], data.y[indices].astype(np.int64), data.class_names)


def _holdout_indices(version) -> np.ndarray | None:
    if version is None or not version.test_predictions_path:
        return None
    from core.ml.holdout_predictions import PredictionsFileError, read_holdout_predictions

    try:
        return read_holdout_predictions(resolve_artifact(version.test_predictions_path)).indices
    except (PredictionsFileError, OSError):
        return None


def drifted_images(
    x: np.ndarray, rng: np.random.Generator, *, inverted_share: float = 0.6, noise: float = 80.0
) -> np.ndarray:
    """The drift episode's inputs: each image inverted (a scanner with the colours swapped)
    with probability `inverted_share`, else buried in Gaussian noise of `noise` grey levels."""
    x = np.asarray(x)
    inverted = rng.random(len(x)) < inverted_share
    noisy = x.astype(np.float64) + rng.normal(0.0, noise, x.shape)
    out = np.clip(noisy, 0, 255).astype(np.uint8)
    out[inverted] = 255 - x[inverted]
    return out


def held_out_samples(
    channel: str, database_url: str | None = None, *, drift: bool = False, seed: int = 0
) -> HeldOut:
    """The channel's holdout, PNG-encoded; `drift` turns every image into a drifted one."""
    held = holdout_images(channel, database_url)
    x = drifted_images(held.x, np.random.default_rng(seed)) if drift else held.x
    return HeldOut([encode_png(img) for img in x], [int(y) for y in held.y], held.class_names)


def check_loopback(base_url: str) -> str:
    """The simulator only talks to a local server: refuse any other host."""
    host = urlparse(base_url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the simulator only sends to a loopback URL (got host {host!r})")
    return base_url.rstrip("/")


def feedback_for(
    rng: random.Random, predicted: int, truth: int, num_classes: int, share: float
) -> dict | None:
    """What a user says, if anything: wrong answers draw complaints (mostly with the right
    class) far more often than right ones draw praise; a few users send noise."""
    if predicted != truth:
        if rng.random() >= min(1.0, 3 * share):
            return None
        claimed = truth if rng.random() < 0.8 else None
        return {"rating": "down", "claimed_class": claimed, "comment": rng.choice(COMPLAINTS)}
    if rng.random() >= share:
        return None
    if rng.random() < 0.1:  # noise: a wrong claim on a right answer
        wrong = rng.choice([c for c in range(num_classes) if c != truth])
        return {"rating": "down", "claimed_class": wrong, "comment": rng.choice(NOISE)}
    return {"rating": "up", "comment": rng.choice(PRAISE)}


def _one_request(
    client: httpx.Client, url: str, traffic: Traffic, rng: random.Random, tally: Tally, share: float
) -> None:
    samples = traffic.pick(rng)
    index = rng.randrange(len(samples.labels))
    files = {"file": ("sample.png", samples.images[index], "image/png")}
    started = time.perf_counter()
    try:
        response = client.post(f"{url}/predict", files=files)
    except httpx.HTTPError as exc:
        response = None
        status = type(exc).__name__
    else:
        status = str(response.status_code)
    elapsed_ms = (time.perf_counter() - started) * 1000
    ok = response is not None and response.status_code == 200
    body = response.json() if ok else {}
    truth = samples.labels[index]
    with tally.lock:
        tally.sent += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if not ok:
            tally.failed += 1
            return
        tally.answered += 1
        tally.wrong += body["class_index"] != truth
        tally.arms[body["arm"]] = tally.arms.get(body["arm"], 0) + 1
        tally.latencies_ms.append(elapsed_ms)
    verdict = feedback_for(rng, body["class_index"], truth, len(samples.class_names), share)
    if verdict is not None:
        _send_feedback(client, url, body["prediction_id"], verdict, tally)


def _send_feedback(
    client: httpx.Client, url: str, prediction_id: str, verdict: dict, tally: Tally
) -> None:
    base = url.split("/v1/channels/")[0]
    try:
        response = client.post(
            f"{base}/v1/feedback", json={"prediction_id": prediction_id, **verdict}
        )
        ok = response.status_code == 201
    except httpx.HTTPError:
        ok = False
    with tally.lock:
        tally.feedback_sent += ok
        tally.feedback_failed += not ok


def simulate(
    base_url: str,
    channel: str,
    api_key: str,
    rate: float = 20.0,
    duration: float = 60.0,
    *,
    seed: int = 0,
    feedback_share: float = 0.2,
    database_url: str | None = None,
    samples: HeldOut | None = None,
    scenario: str = "calm",
) -> dict:
    """Send about `rate` requests per second for `duration` seconds; returns a summary.

    Scenario `drift` reproduces the demo's episode: DRIFT_SHARE of the images are inverted or
    noisy, and users who get a wrong answer complain, mostly naming the right class."""
    if not 0 < rate <= MAX_RATE or not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"rate must be in (0, {MAX_RATE}] and duration in (0, {MAX_DURATION_S}]")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)} (got {scenario!r})")
    url = f"{check_loopback(base_url)}/v1/channels/{channel}"
    traffic = Traffic(samples or held_out_samples(channel, database_url))
    if scenario == "drift":
        drifted = held_out_samples(channel, database_url, drift=True, seed=seed)
        traffic = Traffic(traffic.clean, drifted, DRIFT_SHARE)
    total = max(1, int(rate * duration))
    workers = min(16, max(1, int(rate // 10) + 1))
    tally = Tally()
    started = time.monotonic()
    headers = {"X-API-Key": api_key, **SIMULATED_HEADERS}

    def worker(offset: int) -> None:
        rng = random.Random(seed * 1000 + offset)
        with httpx.Client(headers=headers, timeout=10.0) as client:
            for i in range(offset, total, workers):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() - started > duration + 5:
                    return  # bounded in time even when the server is slow
                _one_request(client, url, traffic, rng, tally, feedback_share)

    with ThreadPoolExecutor(workers, thread_name_prefix="simulate") as pool:
        list(pool.map(worker, range(workers)))
    return tally.summary(time.monotonic() - started)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `channelhub simulate`."""
    parser.add_argument("--channel", required=True, help="channel slug")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="serving API (loopback)")
    parser.add_argument(
        "--api-key", default=None, help="the channel's key (default: CHANNELHUB_API_KEY_<SLUG>)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="calm",
        help="drift: a share of inverted or noisy digits, as in the demo's episode",
    )
    parser.add_argument(
        "--feedback-share", type=float, default=0.2, help="share of right answers that get feedback"
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Run `channelhub simulate`; prints the summary as JSON."""
    key = args.api_key or channel_key_from_env(args.channel)
    if not key:
        print(f"no API key: pass --api-key or set {channel_key_variable(args.channel)}")
        return 2
    summary = simulate(
        args.url,
        args.channel,
        key,
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        feedback_share=args.feedback_share,
        scenario=args.scenario,
    )
    print(json.dumps(summary))
    return 0 if summary["answered"] else 1
