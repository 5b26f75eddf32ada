"""Soak: mixed work on one SQLite file for a while, then count what was acknowledged and stored.

Predictions on three channels and feedback on them through a real `channelhub serve` process,
annotations through core.actions, dashboard page loads (Streamlit AppTest, in this process), a
real training job (`channelhub worker` and an enqueued seed-cnn job on digits) and the promotion
of the version it trains, all at once on one registry. Traffic goes only to 127.0.0.1, at a
paced rate, and stops by itself (after `--duration`, or at most `MAX_EXTRA_S` later while the
training job and its promotion finish).

    python bench/soak.py [--duration SECONDS] [--rate PREDICTIONS_PER_S] [--home DIR]

The last line printed is one JSON object: `requests`, `errors_5xx`, `lock_errors` ("database is
locked" seen anywhere: answers, page errors, this process's calls, the children's logs), the
acknowledged, stored and lost predictions and feedback, and what else ran. The exit status is 1
when any of errors_5xx, lock_errors, transport_errors, lost_* is not 0, or the promoted version
never answered (`ok`). `--home` must name a new folder; the default temporary one is removed
after a run that passed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from bench.processes import start_process, stop_process  # noqa: E402

CHANNELS = ("web", "mobile", "partner-api")
PROMOTED_ON = "partner-api"
LOCKED = "database is locked"
MAX_EXTRA_S = 240.0  # how long traffic may go on past --duration for the job and promotion
PAGES = ("overview", "loop", "monitoring", "feedback", "jobs", "channels")
FEEDBACK_SHARE = 0.3  # of acknowledged predictions
# A connection idle this long is not reused: uvicorn closes idle ones after 5 s, and a request
# sent as it does so fails in transit (the client's race, not the server's error).
KEEPALIVE = httpx.Limits(keepalive_expiry=1.0)
JOB_HP = {"epochs": 2, "augmentation": False, "batch_size": 64}


@dataclass
class Tally:
    """What every thread saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter = field(default_factory=Counter)
    lock_errors: int = 0
    transport_errors: int = 0
    predictions: dict[str, str] = field(default_factory=dict)  # acknowledged id -> channel
    feedback: dict[int, str] = field(default_factory=dict)  # acknowledged id -> prediction id
    served_versions: dict[str, set[int]] = field(default_factory=dict)
    annotations: int = 0
    page_loads: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, for the report

    def answer(self, kind: str, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
            if response.status_code >= 400:
                self._fail(f"{kind} {response.status_code}: {response.text[:200]}")

    def problem(self, what: str, exc: BaseException | str) -> None:
        with self.lock:
            self._fail(f"{what}: {exc}")

    def _fail(self, text: str) -> None:
        self.lock_errors += LOCKED in text
        if len(self.failures) < 20:
            self.failures.append(text)

    def count(self, predicate) -> int:
        with self.lock:
            return sum(n for key, n in self.statuses.items() if predicate(*key))


def build_registry() -> tuple[dict[str, str], list[bytes], int]:
    """Digits, a tiny trained version serving three channels; returns their keys, test PNGs
    and the number of classes (the registry is the one DATABASE_URL names)."""
    from core.actions import channels as channel_actions
    from core.actions.base import SYSTEM
    from core.actions.datasets import register_builtin_dataset
    from core.actions.models import ensure_model
    from core.ml.datasets import load_dataset
    from core.ml.images import encode_png
    from db.artifact_store import artifact_store
    from db.engine import session_scope
    from db.repo.channels import ChannelSpec, promote_version
    from db.repo.models import register_version
    from db.settings import artifact_dir, relative_artifact

    data = load_dataset("digits")
    path = artifact_dir() / "models" / "soak-tiny" / "model.keras"
    from tests.serving_helpers import train_tiny_model  # the tests' tiny model, 1–2 s to train

    tiny = train_tiny_model(path, data, epochs=10, seed=1)
    artifact_store().publish(relative_artifact(path))
    keys = {}
    with session_scope() as s:
        dataset = register_builtin_dataset(actor=SYSTEM, session=s)
        model = ensure_model(actor=SYSTEM, session=s, name="digits-soak")
        version = register_version(
            session=s, model_id=model.id, architecture="tiny-mlp",
            artifact_path=relative_artifact(path), artifact_sha256=tiny.sha256,
            hyperparameters={}, dataset_id=dataset.id, dataset_fingerprint=data.fingerprint,
            evaluation={"accuracy": tiny.accuracy}, history=[], framework_versions={},
            device="cpu", train_seconds=1.0,
        )  # fmt: skip
        for slug in CHANNELS:
            _, keys[slug] = channel_actions.create_channel(
                actor=SYSTEM,
                session=s,
                slug=slug,
                spec=ChannelSpec(name=slug.title(), dataset_id=dataset.id, model_id=model.id),
            )
            promote_version(session=s, slug=slug, version_id=version.id)
    images = [encode_png(image) for image in data.x[:200]]
    return keys, images, data.num_classes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Load:
    """The traffic threads: predictions (paced), feedback on some of them, annotations."""

    def __init__(self, base: str, keys: dict[str, str], images: list[bytes], classes: int,
                 tally: Tally, rate: float, threads: int = 3) -> None:  # fmt: skip
        self.base, self.keys, self.images, self.classes = base, keys, images, classes
        self.tally, self.rate, self.threads = tally, rate, threads
        self.stop = threading.Event()
        self.to_feedback: queue.Queue = queue.Queue(maxsize=1000)
        self.to_annotate: queue.Queue = queue.Queue(maxsize=1000)
        self.running: list[threading.Thread] = []

    def start(self, max_seconds: float) -> None:
        max_requests = int(self.rate * max_seconds / self.threads) + 1
        workers = [(self._predict, (i, max_requests)) for i in range(self.threads)]
        workers += [(self._give_feedback, ()), (self._annotate, ())]
        for target, args in workers:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.running.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.running:
            thread.join(60)

    def _predict(self, index: int, max_requests: int) -> None:
        rng = random.Random(index)
        pause = self.threads / self.rate
        with httpx.Client(base_url=self.base, timeout=60, limits=KEEPALIVE) as client:
            for n in range(max_requests):
                if self.stop.is_set():
                    return
                started = time.monotonic()
                slug = CHANNELS[(index + n) % len(CHANNELS)]
                files = {"file": ("digit.png", rng.choice(self.images), "image/png")}
                self._post_prediction(client, slug, files, rng)
                self.stop.wait(max(0.0, pause - (time.monotonic() - started)))

    def _post_prediction(self, client: httpx.Client, slug: str, files: dict, rng) -> None:
        try:
            response = client.post(
                f"/v1/channels/{slug}/predict", files=files, headers={"X-API-Key": self.keys[slug]}
            )
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.transport_errors += 1
            self.tally.problem(f"predict on {slug}", exc)
            return
        self.tally.answer("predict", response)
        if response.status_code != 200:
            return
        body = response.json()
        with self.tally.lock:
            self.tally.predictions[body["prediction_id"]] = slug
            self.tally.served_versions.setdefault(slug, set()).add(body["version_id"])
        if rng.random() < FEEDBACK_SHARE and not self.to_feedback.full():
            self.to_feedback.put((slug, body["prediction_id"], body["class_index"]))

    def _give_feedback(self) -> None:
        rng = random.Random(99)
        with httpx.Client(base_url=self.base, timeout=60, limits=KEEPALIVE) as client:
            while not self.stop.is_set():
                try:
                    slug, prediction_id, predicted = self.to_feedback.get(timeout=0.2)
                except queue.Empty:
                    continue
                down = rng.random() < 0.4
                body = {"prediction_id": prediction_id, "rating": "down" if down else "up",
                        "claimed_class": rng.randrange(self.classes) if down else None,
                        "comment": "soak"}  # fmt: skip
                try:
                    response = client.post(
                        "/v1/feedback", json=body, headers={"X-API-Key": self.keys[slug]}
                    )
                except httpx.HTTPError as exc:
                    with self.tally.lock:
                        self.tally.transport_errors += 1
                    self.tally.problem("feedback", exc)
                    continue
                self.tally.answer("feedback", response)
                if response.status_code == 201:
                    feedback_id = response.json()["feedback_id"]
                    with self.tally.lock:
                        self.tally.feedback[feedback_id] = prediction_id
                    if not self.to_annotate.full():
                        self.to_annotate.put((feedback_id, down, predicted))

    def _annotate(self) -> None:
        from core.actions.base import Actor
        from core.actions.feedback import annotate_feedback
        from db.repo.feedback import AnnotationInput

        annotator, rng = Actor("soak-annotator", "annotator"), random.Random(7)
        while not self.stop.is_set():
            try:
                feedback_id, down, predicted = self.to_annotate.get(timeout=0.2)
            except queue.Empty:
                continue
            verdict = rng.choice(("corrected", "rejected")) if down else "confirmed"
            true_class = rng.randrange(self.classes) if verdict == "corrected" else None
            if verdict == "confirmed":
                true_class = predicted
            try:
                annotate_feedback(
                    actor=annotator,
                    feedback_id=feedback_id,
                    annotation=AnnotationInput(
                        verdict=verdict,
                        true_class=true_class,
                        note="soak",
                        num_classes=self.classes,
                    ),
                )
            except Exception as exc:  # counted and reported, never fatal to the soak
                self.tally.problem("annotate", exc)
                continue
            with self.tally.lock:
                self.tally.annotations += 1
            self.stop.wait(0.1)


def load_page(page: str, token: str, tally: Tally) -> None:
    """One dashboard page through AppTest, signed in; an exception or error element is a
    failure (with its text checked for the lock error)."""
    from streamlit.testing.v1 import AppTest

    from dashboard.auth import TOKEN

    try:
        at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.session_state[TOKEN] = token
        at.run()
        at.switch_page(f"views/{page}.py")
        at.run()
    except Exception as exc:  # AppTest's own timeout or failure
        tally.problem(f"page {page}", exc)
        return
    for problem in [e.value for e in at.exception] + [str(e.value) for e in at.error]:
        tally.problem(f"page {page}", problem)
    with tally.lock:
        tally.page_loads += 1


@dataclass
class Orchestra:
    """The main thread's work between page loads: the training job, then its promotion."""

    job_id: int | None = None
    job_status: str = "not queued"
    promoted_version: int | None = None

    def enqueue(self) -> None:
        from core.actions.base import SYSTEM
        from core.actions.jobs import enqueue_retrain
        from db.engine import session_scope
        from db.queries import lookups

        with session_scope() as s:
            channel = lookups.get_channel(session=s, slug=PROMOTED_ON)
            job = enqueue_retrain(
                actor=SYSTEM, session=s, model_id=channel.model_id,
                dataset_id=channel.dataset_id, architecture="seed-cnn",
                hyperparameters=JOB_HP, channel_id=channel.id, note="soak",
            )  # fmt: skip
        self.job_id, self.job_status = job.id, job.status

    def step(self, tally: Tally) -> None:
        """Follow the job; promote its version once it succeeded (gate overridden: the soak
        measures the promotion under load, not the version's quality)."""
        from core.actions.base import Actor
        from core.actions.channels import promote_version
        from db.engine import session_scope
        from db.queries import lookups

        if self.promoted_version is not None or self.job_id is None:
            return
        try:
            with session_scope() as s:
                job = lookups.get_job(session=s, job_id=self.job_id)
            self.job_status = job.status
            if job.status != "succeeded":
                return
            promote_version(
                actor=Actor("soak-manager", "manager"), slug=PROMOTED_ON,
                version_id=job.result_version_id, reason="soak",
                override_reason="soak: a promotion under load",
            )  # fmt: skip
            self.promoted_version = job.result_version_id
        except Exception as exc:  # counted and reported; the next step tries again
            tally.problem("job or promotion", exc)


def stored_ids(tally: Tally) -> tuple[set[str], set[int], int]:
    """The acknowledged predictions and feedback found in the registry, and how many stored
    predictions lack their input PNG."""
    from sqlalchemy import select

    from db.artifact_store import artifact_store
    from db.engine import session_scope
    from db.models import Feedback, Prediction

    store = artifact_store()
    with session_scope() as s:
        rows = dict(s.execute(select(Prediction.id, Prediction.input_path)).all())
        feedback = set(s.scalars(select(Feedback.id)))
    predictions = set(tally.predictions) & set(rows)
    missing_inputs = sum(1 for i in predictions if rows[i] and not store.exists(rows[i]))
    return predictions, set(tally.feedback) & feedback, missing_inputs


def logged_lock_errors(*logs: Path) -> int:
    return sum(p.read_text(errors="replace").count(LOCKED) for p in logs if p.exists())


def summary(tally: Tally, orchestra: Orchestra, seconds: float, logs: list[Path]) -> dict:
    predictions, feedback, missing_inputs = stored_ids(tally)
    acknowledged_p, acknowledged_f = len(tally.predictions), len(tally.feedback)
    promoted = orchestra.promoted_version
    out = {
        "seconds": round(seconds, 1),
        "requests": tally.count(lambda kind, status: True) + tally.transport_errors,
        "prediction_requests": tally.count(lambda kind, status: kind == "predict"),
        "feedback_requests": tally.count(lambda kind, status: kind == "feedback"),
        "errors_5xx": tally.count(lambda kind, status: status >= 500),
        "errors_4xx": tally.count(lambda kind, status: 400 <= status < 500),
        "transport_errors": tally.transport_errors,
        "lock_errors": tally.lock_errors + logged_lock_errors(*logs),
        "acknowledged_predictions": acknowledged_p,
        "stored_predictions": len(predictions),
        "lost_predictions": acknowledged_p - len(predictions),
        "missing_inputs": missing_inputs,
        "acknowledged_feedback": acknowledged_f,
        "stored_feedback": len(feedback),
        "lost_feedback": acknowledged_f - len(feedback),
        "annotations": tally.annotations,
        "page_loads": tally.page_loads,
        "training_job": orchestra.job_status,
        "promoted_version": promoted,
        "promoted_version_served": promoted in tally.served_versions.get(PROMOTED_ON, set()),
        "predictions_per_s": round(acknowledged_p / max(seconds, 1e-9), 1),
        "failures": tally.failures[:5],
    }
    out["ok"] = (
        out["errors_5xx"] == out["lock_errors"] == out["transport_errors"] == 0
        and out["lost_predictions"] == out["lost_feedback"] == 0
        and out["promoted_version_served"]
    )  # fmt: skip
    return out


def drive(args, orchestra: Orchestra, base: str, keys, images, classes: int, tally: Tally):
    """Traffic for `args.duration` s (longer, up to MAX_EXTRA_S, until the promoted version
    has answered); the dashboard pages load in this thread meanwhile."""
    from core.actions.base import SYSTEM
    from core.actions.sign_in import sign_in
    from core.actions.users import add_user

    password = os.urandom(12).hex()
    add_user(actor=SYSTEM, name="soak-viewer", role="manager", password=password)
    token = sign_in("soak-viewer", password).token
    load = Load(base, keys, images, classes, tally, args.rate)
    started = time.monotonic()
    load.start(args.duration + MAX_EXTRA_S)
    pages = 0
    try:
        while True:
            elapsed = time.monotonic() - started
            orchestra.step(tally)
            served = orchestra.promoted_version in tally.served_versions.get(PROMOTED_ON, ())
            finished = served or orchestra.job_status in ("failed", "cancelled")
            if elapsed >= args.duration and (finished or elapsed >= args.duration + MAX_EXTRA_S):
                break
            load_page(PAGES[pages % len(PAGES)], token, tally)
            pages += 1
            time.sleep(0.5)
    finally:
        load.close()
    return time.monotonic() - started


def run(args: argparse.Namespace, home: Path) -> dict:
    os.environ.update(
        DATABASE_URL=f"sqlite:///{home / 'channelhub.db'}", CHANNELHUB_HOME=str(home),
        CHANNELHUB_REFRESH_SECONDS="0.5", TF_CPP_MIN_LOG_LEVEL="2",
    )  # fmt: skip
    os.environ.pop("CHANNELHUB_ARTIFACTS", None)
    keys, images, classes = build_registry()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = [home / "api.log", home / "worker.log"]
    cli = [sys.executable, "-m", "core.ops.cli"]
    orchestra = Orchestra()
    orchestra.enqueue()  # the worker starts on it while the API loads its models
    worker = start_process([*cli, "worker", "--poll-interval", "0.5"], dict(os.environ), logs[1])
    api, tally = None, Tally()
    try:
        api = start_process(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(args.api_workers), "--log-level", "warning"],
            dict(os.environ), logs[0], f"{base}/readyz",
        )  # fmt: skip
        seconds = drive(args, orchestra, base, keys, images, classes, tally)
    finally:
        stop_process(worker)
        if api is not None:
            stop_process(api)
    return summary(tally, orchestra, seconds, logs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=40.0, help="predictions per second")
    parser.add_argument("--api-workers", type=int, default=1, help="channelhub serve --workers")
    parser.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    home = args.home or Path(tempfile.mkdtemp(prefix="channelhub-soak-"))
    try:
        result = run(args, home.resolve())
    except RuntimeError as exc:  # a child that would not start: still one JSON line last
        result = {"ok": False, "error": str(exc)[-2000:]}
    if args.home is None and result["ok"]:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"soak files (database, api.log, worker.log): {home}", flush=True)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
