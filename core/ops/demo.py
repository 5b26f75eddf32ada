"""`channelhub demo`: the embedded default — digits, three channels, two trained versions,
live traffic through the real API and user feedback, all on this machine and offline."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.actions import channels as channel_actions
from core.actions.base import SYSTEM, Actor
from core.actions.datasets import register_builtin_dataset
from core.actions.feedback import annotate_feedback
from core.actions.models import ensure_model
from core.ops.demo_users import ensure_demo_users, print_demo_users
from db.engine import get_engine, session_scope
from db.files import write_private_text
from db.queries import lookups
from db.repo import feedback as feedback_repo
from db.repo import models as model_repo
from db.settings import home_dir

MODEL_NAME = "digits-classifier"
# The demo's annotations carry a person's name, as real ones do.
DEMO_MANAGER = Actor("demo-manager", "manager")
DEMO_CHANNELS = [
    # slug, name, kind, min accuracy SLO, max p95 latency SLO (ms)
    ("web", "Web app", "web", 0.95, 100.0),
    ("mobile", "Mobile app", "mobile", 0.97, 50.0),
    ("partner-api", "Partner API", "api", 0.90, 250.0),
]


def keys_file() -> Path:
    """Demo keys are kept here (mode 600) so `make run` can print them again; real channels'
    keys are only ever stored hashed."""
    return home_dir() / "demo_keys.json"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1 epoch each and a little traffic")
    parser.add_argument("--traffic-seconds", type=float, default=None, help="per channel")
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second")
    parser.add_argument("--no-traffic", action="store_true", help="skip the simulated traffic")


def demo_exists() -> bool:
    with session_scope() as s:
        return any(c.slug == "web" for c in lookups.list_channels(session=s))


def run_demo(args: argparse.Namespace) -> int:
    get_engine()
    if demo_exists():
        print("The demo is already built in", home_dir())
        ensure_demo_users()
        print_keys()
        print_demo_users()
        return 0
    keys = create_channels()
    train_versions(quick=args.quick)
    promote_demo_versions()
    write_private_text(keys_file(), json.dumps(keys, indent=2))
    ensure_demo_users()
    if not args.no_traffic:
        seconds = args.traffic_seconds or (3.0 if args.quick else 20.0)
        drive_traffic(keys, seconds=seconds, rate=args.rate)
        annotate_some_feedback(count=8)
    print("\nDemo ready:", home_dir())
    print_keys()
    print_demo_users()
    return 0


def print_keys() -> None:
    if keys_file().is_file():
        print("API keys of the demo channels (header X-API-Key):")
        for slug, key in json.loads(keys_file().read_text()).items():
            print(f"  {slug:12} {key}")


def create_channels() -> dict[str, str]:
    keys = {}
    with session_scope() as s:
        dataset = register_builtin_dataset(actor=SYSTEM, session=s)
        model = ensure_model(actor=SYSTEM, session=s, name=MODEL_NAME)
        for slug, name, kind, min_acc, max_p95 in DEMO_CHANNELS:
            _, keys[slug] = channel_actions.create_channel(
                actor=SYSTEM, session=s, slug=slug, name=name, kind=kind, dataset_id=dataset.id,
                model_id=model.id, slo_min_accuracy=min_acc, slo_max_p95_ms=max_p95,
            )  # fmt: skip
    return keys


def train_versions(*, quick: bool) -> None:
    """Queue the founding `seed-cnn` and the stronger default, and run a worker until idle."""
    from core.actions.jobs import enqueue_retrain
    from core.ml.catalog import DEFAULT_ARCHITECTURE
    from core.ml.hparams import Hyperparameters
    from core.training.worker import TrainingWorker, WorkerOptions

    seed_epochs = 1 if quick else 15
    default_epochs = 1 if quick else Hyperparameters().epochs
    with session_scope() as s:
        dataset = register_builtin_dataset(actor=SYSTEM, session=s)
        model = model_repo.get_model_by_name(session=s, name=MODEL_NAME)
        web = lookups.get_channel(session=s, slug="web")
        for arch, hp, note in [
            ("seed-cnn", {"epochs": seed_epochs, "augmentation": False}, "founding network"),
            (DEFAULT_ARCHITECTURE, {"epochs": default_epochs}, "stronger default"),
        ]:
            enqueue_retrain(
                actor=SYSTEM, session=s, model_id=model.id, dataset_id=dataset.id,
                architecture=arch, hyperparameters=hp, channel_id=web.id, note=note,
            )  # fmt: skip
    print("training the demo versions (seed-cnn, then the default architecture)…", flush=True)
    TrainingWorker(WorkerOptions(exit_when_idle=True, poll_interval_s=0.2)).run()


def promote_demo_versions() -> None:
    with session_scope() as s:
        versions = model_repo.list_versions(session=s, limit=2)
        if len(versions) < 2:
            raise RuntimeError("demo training did not produce two versions; see `channelhub jobs`")
        newest, founding = versions[0], versions[1]
        for slug, version in (("web", newest), ("partner-api", newest), ("mobile", founding)):
            channel_actions.promote_version(
                actor=SYSTEM, session=s, slug=slug, version_id=version.id
            )
        channel_actions.start_canary(
            actor=SYSTEM, session=s, slug="mobile", version_id=newest.id, traffic=0.25
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the serving API exited during start-up")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the serving API was not ready after {timeout_s:.0f} s")


def drive_traffic(keys: dict[str, str], *, seconds: float, rate: float) -> None:
    """Start the real API on a loopback port, simulate users on every channel, stop it."""
    from core.ops.simulator import simulate

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "core.ops.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=dict(os.environ))
    try:
        _wait_ready(url, proc)
        for index, (slug, key) in enumerate(keys.items()):
            summary = simulate(url, slug, key, rate=rate, duration=seconds, seed=index)
            print(f"traffic on {slug}: {summary}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def annotate_some_feedback(count: int) -> None:
    """A few verdicts by a demo manager, so the review counters have something to show."""
    from db.repo.feedback import list_pending_feedback_ids

    rng = random.Random(0)
    with session_scope() as s:
        for feedback_id in list_pending_feedback_ids(session=s, limit=count):
            item = feedback_repo.get_feedback(session=s, feedback_id=feedback_id)
            if item.rating == "down" and item.claimed_class is None:
                verdict, true_class = "rejected", None
            else:
                verdict, true_class = "confirmed", None
            if rng.random() < 0.2:
                verdict = "rejected"
            annotate_feedback(
                actor=DEMO_MANAGER, session=s, feedback_id=feedback_id, verdict=verdict,
                true_class=true_class, tags=["demo"], note="reviewed by the demo",
            )  # fmt: skip
    print(f"annotated {count} feedback items as demo-manager", flush=True)
