"""`channelhub demo`: the embedded default — digits, three channels, two trained versions,
live traffic through the real API and user feedback, all on this machine and offline."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from core.actions import channels as channel_actions
from core.actions.base import SYSTEM, Actor
from core.actions.datasets import register_builtin_dataset
from core.actions.models import ensure_model
from core.ops.demo_users import ensure_demo_users, print_demo_users
from db.engine import get_engine, session_scope
from db.files import write_private_text
from db.queries import lookups
from db.repo import models as model_repo
from db.repo.channels import ChannelSpec
from db.settings import home_dir

if TYPE_CHECKING:
    from core.ops.backfill import ChannelTraffic, DriftEpisode

MODEL_NAME = "digits-classifier"
# The demo's annotations carry a person's name, as real ones do.
DEMO_MANAGER = Actor("demo-manager", "manager")
DEMO_CHANNELS = [
    # slug, name, kind, min feedback accuracy SLO, max p95 latency SLO (ms)
    ("web", "Web app", "web", 0.85, 100.0),
    ("mobile", "Mobile app", "mobile", 0.80, 50.0),
    ("partner-api", "Partner API", "api", 0.80, 250.0),
]
# Feedback accuracy runs below a model's true accuracy (wrong answers draw far more feedback
# than right ones), hence the accuracy objectives above. An hour of the backfill holds a few
# dozen requests on a calm channel and about 200 in the drift episode: drift is judged from 100
# predictions a bucket (PSI noise of 10-16 bins stays well under 0.25 there) and accuracy from
# 20 annotated items, so the calm hours say "not enough data" rather than pass or page.
DEMO_OBJECTIVES = {
    "slo_min_feedback": 20, "slo_max_error_rate": 0.02, "slo_max_drift_psi": 0.25,
    "alert_m": 3, "alert_n": 5, "drift_min_count": 100,
}  # fmt: skip
# The demo's week is judged in hourly buckets (the 7 d chart's); `channelhub controller`
# keeps judging live traffic in its own, shorter buckets.
BACKFILL_BUCKET_S = 3600


def demo_traffic(quick: bool) -> tuple[list[ChannelTraffic], DriftEpisode]:
    """Requests a day per channel, and the drift episode on `web` (the last hours: a new
    client sending inverted or noisy digits)."""
    from core.ops.backfill import ChannelTraffic, DriftEpisode

    scale = 0.2 if quick else 1.0
    channels = [
        ChannelTraffic("web", int(900 * scale), feedback_share=0.2),
        ChannelTraffic("mobile", int(600 * scale)),
        ChannelTraffic("partner-api", int(400 * scale)),
    ]
    # Six hours still fill the five complete hourly buckets the closing controller pass judges.
    return channels, DriftEpisode("web", hours=6 if quick else 12, per_hour=150)


def keys_file() -> Path:
    """Demo keys are kept here (mode 600) so `make run` can print them again; real channels'
    keys are only ever stored hashed."""
    return home_dir() / "demo_keys.json"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1 epoch each and a little traffic")
    parser.add_argument("--traffic-seconds", type=float, default=None, help="per channel")
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second")
    parser.add_argument("--no-traffic", action="store_true", help="skip the simulated traffic")
    parser.add_argument(
        "--no-backfill", action="store_true", help="skip the 7 days of past simulated traffic"
    )


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
        if not args.no_backfill:
            backfill_week(quick=args.quick)
        seconds = args.traffic_seconds or (3.0 if args.quick else 20.0)
        drive_traffic(keys, seconds=seconds, rate=args.rate)
        evaluate_alerts()
    print("\nDemo ready:", home_dir())
    print_keys()
    print_demo_users()
    return 0


def print_keys() -> None:
    if keys_file().is_file():
        print("API keys of the demo channels (header X-API-Key):")
        for slug, key in json.loads(keys_file().read_text()).items():
            print(f"  {slug:12} {key}")


def channel_specs(
    dataset_id: int,
    model_id: int,
    table: Iterable[tuple[str, str, str, float, float]] = DEMO_CHANNELS,
) -> dict[str, ChannelSpec]:
    """Slug -> spec of each row of a channel table laid out as DEMO_CHANNELS is (the dashboard
    test registry uses it with its own figures)."""
    return {
        slug: ChannelSpec(
            name=name,
            kind=kind,
            dataset_id=dataset_id,
            model_id=model_id,
            slo_min_accuracy=min_acc,
            slo_max_p95_ms=max_p95,
        )
        for slug, name, kind, min_acc, max_p95 in table
    }


def create_channels() -> dict[str, str]:
    keys = {}
    with session_scope() as s:
        dataset = register_builtin_dataset(actor=SYSTEM, session=s)
        model = ensure_model(actor=SYSTEM, session=s, name=MODEL_NAME)
        for slug, spec in channel_specs(dataset.id, model.id).items():
            _, keys[slug] = channel_actions.create_channel(
                actor=SYSTEM, session=s, slug=slug, spec=spec
            )
            channel_actions.set_objectives(
                actor=SYSTEM, session=s, slug=slug, reason="demo objectives", **DEMO_OBJECTIVES
            )
    return keys


def train_versions(*, quick: bool) -> None:
    """Queue the founding `seed-cnn` and the stronger default, and run a worker until idle."""
    from core.actions.jobs import enqueue_retrain
    from core.ml.catalog import DEFAULT_ARCHITECTURE
    from core.ml.hparams import Hyperparameters
    from core.training.worker import TrainingWorker, WorkerOptions

    # A few epochs even when quick: one leaves the default network near chance on digits.
    seed_epochs, default_epochs = (3, 4) if quick else (15, Hyperparameters().epochs)
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


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
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


def backfill_week(*, quick: bool) -> None:
    """Seven days of past traffic on every channel, with the drift episode on `web`."""
    from core.ops.backfill import backfill

    started = time.monotonic()
    channels, episode = demo_traffic(quick)
    print("backfilling 7 days of simulated traffic…", flush=True)
    for slug, counts in backfill(channels, episode, reviewer=DEMO_MANAGER).items():
        print(f"  {slug:12} {counts}", flush=True)
    print(f"backfilled in {time.monotonic() - started:.0f} s", flush=True)


def evaluate_alerts() -> None:
    """One controller pass over the backfilled week, so the episode's alerts exist at once."""
    from core.ops.controller import Controller

    controller = Controller(bucket_s=BACKFILL_BUCKET_S)
    for line in controller.tick():
        print(line, flush=True)
    controller.webhooks.close()
