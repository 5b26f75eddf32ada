"""Serving benchmark: ChannelHub's API against LitServe serving the same artifact, and against a
naive FastAPI `model.predict` endpoint.

Run: `python bench/serving.py` (about five minutes on 2 CPU cores). It trains `seed-cnn` for one
epoch on the digits in a temporary registry, starts the servers as subprocesses on loopback ports
(ChannelHub with `--workers`, default one per core), drives each with the same closed-loop load
(32 clients × 2,000 requests of the same PNG uploads) and prints the figures; the last line is one
JSON object. The rounds alternate ChannelHub and LitServe (batching on: batch 32, 2 ms timeout,
fast queue), both up, the idle one stopped (SIGSTOP), and a single client's latency is taken on
ChannelHub after every other round (the median of those is reported); then, with
those stopped, two twins of ChannelHub's app, one with the prediction log's rollups and one
without, swapping those settings every round (a crossover: one process of a pair ran ~5 %
slower than the other for a whole run, whatever its config), twice as many rounds. Figures are
medians over the rounds (ten by default: a round lasts only seconds).
`peer_ratio` is ChannelHub's requests/s ÷ LitServe's, `rollup_ratio` the twin with rollups ÷ the
one without, each the median of the rounds' ratios. Every ChannelHub answer is stored before it
is sent: `stored` must equal `answered`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from processes import start_process, stop_process  # noqa: E402  (beside this file)


def naive_app(model_path: str):
    """What a first attempt looks like: decode, then `model.predict` on each request."""
    import keras
    from fastapi import FastAPI, File

    from core.ml.images import decode_image, fit_to_shape

    model = keras.saving.load_model(model_path, compile=False)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    app = FastAPI()

    @app.post("/predict")
    def predict(file: bytes = File()) -> dict:
        image = fit_to_shape(decode_image(file), shape)
        probs = model.predict(image[None].astype("float32"), verbose=0)[0]
        return {"class_index": int(probs.argmax()), "confidence": float(probs.max())}

    return app


def create_twin_app():
    """The serving app with rollups on or off as BENCH_ROLLUPS says (uvicorn factory of a twin);
    SIGUSR1 switches them (the supervisor ignores it, see main)."""
    import logging

    from core.serving.app import create_app
    from core.serving.settings import ServingSettings

    rollups = os.environ.get("BENCH_ROLLUPS") == "1"
    app = create_app(settings=ServingSettings.from_env().with_overrides(rollups=rollups))

    def switch(_signum, _frame) -> None:
        log = app.state.services.predictions
        log.rollups = not log.rollups
        logging.getLogger("uvicorn.error").warning("bench twin: rollups %s", log.rollups)

    signal.signal(signal.SIGUSR1, switch)
    return app


def switch_rollups(twins: list[subprocess.Popen]) -> None:
    """Swap the twins' rollup settings (every worker of each; the supervisors ignore it)."""
    for proc in twins:
        os.killpg(proc.pid, signal.SIGUSR1)
    time.sleep(0.3)


def build_registry(home: Path, epochs: int) -> tuple[str, str, str, list[bytes]]:
    """Train seed-cnn, serve it on channel `bench`; returns url, key, artifact, test PNGs."""
    from core.datasets import register_loaded_dataset
    from core.ml.datasets import load_dataset, split_dataset
    from core.ml.hparams import Hyperparameters
    from core.ml.images import encode_png
    from core.ml.training import TrainConfig, train
    from db.engine import session_scope
    from db.repo.channels import ChannelSpec, create_channel, promote_version
    from db.repo.models import create_model, register_version

    data = load_dataset("digits")
    split = split_dataset(data, seed=0)
    hp = Hyperparameters(epochs=epochs, augmentation=False)
    result = train(TrainConfig("seed-cnn", hp, home / "artifacts" / "bench-v1"), split)
    url = f"sqlite:///{home / 'channelhub.db'}"
    with session_scope(url) as s:
        dataset = register_loaded_dataset(
            session=s, name="digits", source="digits", location=None, data=data
        )
        model = create_model(session=s, name="bench")
        version = register_version(
            session=s, model_id=model.id, architecture="seed-cnn",
            artifact_path=str(result.artifact_path), artifact_sha256=result.artifact_sha256,
            hyperparameters=hp.to_dict(), dataset_id=dataset.id,
            dataset_fingerprint=data.fingerprint, evaluation=result.evaluation,
            history=result.history, framework_versions=result.framework_versions,
            device="cpu", train_seconds=result.train_seconds,
        )  # fmt: skip
        _, key = create_channel(
            session=s, slug="bench", spec=ChannelSpec(name="Bench", dataset_id=dataset.id)
        )
        promote_version(session=s, slug="bench", version_id=version.id)
    images = [encode_png(img) for img in split.test.x]
    return url, key, str(result.artifact_path), images


def start(cmd: list[str], env: dict, ready_url: str, log_path: Path) -> subprocess.Popen:
    """A server process, returned once `ready_url` answers (bench/processes.py)."""
    return start_process(cmd, env, log_path, ready_url)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(image: bytes, boundary: str = "chbenchboundary") -> tuple[bytes, str]:
    """A pre-built multipart body, so the client spends its CPU on sending, not encoding."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    return (
        head + image + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def json_upload(image: bytes) -> tuple[bytes, str]:
    """The same PNG as `{"image_base64": ...}` (the peer's working upload, see litserve_peer)."""
    return json.dumps(
        {"image_base64": base64.b64encode(image).decode()}
    ).encode(), "application/json"


def summarise(latencies: list[float], failed: int, seconds: float) -> dict:
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "answered": len(latencies),
        "failed": failed,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


class RawClient:
    """A minimal HTTP/1.1 keep-alive client. httpx spends ~7 ms of CPU per request, as much as
    the server under test; on 2 cores the load generator must not eat the CPU it measures."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host, self.port, self.path = parsed.hostname, parsed.port, parsed.path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, body: bytes, content_type: str, headers: dict) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        await self.reader.readexactly(length)
        if b"connection: close" in head:
            self.close()
        return int(head[9:12])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(url: str, headers: dict, bodies: list, clients: int, requests: int) -> dict:
    """`clients` concurrent keep-alive connections sending `requests` predictions in all."""
    latencies: list[float] = []
    failed = 0
    counter = iter(range(requests))
    prepared = [RawClient(url).request(body, ctype, headers) for body, ctype in bodies]

    async def client_loop() -> None:
        nonlocal failed
        client = RawClient(url)
        for i in counter:
            started = time.perf_counter()
            try:
                ok = await client.send(prepared[i % len(prepared)]) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                ok = False
                client.close()
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
        client.close()

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return summarise(latencies, failed, time.perf_counter() - started)


def single_client(url: str, headers: dict, bodies: list, requests: int) -> dict:
    """One client, one request at a time: the latency a lone user sees."""
    return asyncio.run(load(url, headers, bodies, 1, requests))


def stored_predictions(database_url: str, expected: int, wait_s: float = 10.0) -> int:
    from sqlalchemy import func, select

    from db.engine import session_scope
    from db.models import Prediction

    deadline = time.monotonic() + wait_s
    while True:
        with session_scope(database_url) as s:
            count = s.scalar(select(func.count()).select_from(Prediction)) or 0
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def print_row(name: str, figures: dict) -> None:
    print(f"{name:<22} rps {figures['rps']:>8}  p50 {figures['p50_ms']:>7} ms  "
          f"p95 {figures['p95_ms']:>7} ms  p99 {figures['p99_ms']:>7} ms  "
          f"answered {figures['answered']}  failed {figures['failed']}", flush=True)  # fmt: skip


def start_api(env: dict, log_path: Path, workers: int, *, twin_rollups: bool | None = None):
    """The real API (`python -m core.serving.api`), or a twin of its app with rollups on or off;
    returns the process and its predict URL."""
    port = free_port()
    if twin_rollups is None:
        cmd = [sys.executable, "-m", "core.serving.api", "--port", str(port)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--api-twin", "--port", str(port)]
        env = {**env, "BENCH_ROLLUPS": "1" if twin_rollups else "0"}
    cmd += ["--workers", str(workers), "--log-level", "warning"]
    proc = start(cmd, env, f"http://127.0.0.1:{port}/readyz", log_path)
    return proc, f"http://127.0.0.1:{port}/v1/channels/bench/predict"


def start_litserve(env: dict, artifact: str, args, log_path: Path):
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--litserve-server", artifact,
           "--port", str(port), "--peer-batch-timeout", str(args.peer_batch_timeout)]  # fmt: skip
    proc = start(cmd, env, f"http://127.0.0.1:{port}/health", log_path)
    return proc, f"http://127.0.0.1:{port}/predict"


def measure_alone(paused: dict[str, subprocess.Popen], name: str) -> None:
    """Let only `name`'s server run: the others are stopped (SIGSTOP) until their turn. Only
    for servers that share nothing (an idle API holding the registry's write lock would stall
    its twin)."""
    for other, proc in paused.items():
        os.killpg(proc.pid, signal.SIGCONT if other == name else signal.SIGSTOP)


def run_rounds(
    targets: dict, args, out: dict, *, between=None, paused=None, lone: str = "", rounds: int = 0
) -> list[dict]:
    """One unmeasured round at full load on each target (the first such round ran far slower
    on whichever server met it), then `args.rounds` rounds, each target in turn, the order
    rotating. `between(i)` runs after round i and returns how to rename targets in round i + 1
    (the twins' crossover); `paused` (name → process) measures each server alone. A `lone`
    target also gets a single client after every other round (the same
    machine's lone-request latency swung 2× over minutes; their median is reported). Returns
    the warm-up runs."""
    names, roles, warm, paused = list(targets), {}, [], paused or {}
    try:
        for name, (u, h, b) in targets.items():
            measure_alone(paused, name)
            warm.append(asyncio.run(load(u, h, b, args.clients, args.requests // 2)))
        for i in range(rounds or args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                measure_alone(paused, name)
                target, target_headers, target_bodies = targets[name]
                figures = asyncio.run(load(target, target_headers, target_bodies,
                                           args.clients, args.requests))  # fmt: skip
                role = roles.get(name, name)
                print_row(f"{role} #{i + 1}", figures)
                out[role].append(figures)
            if lone and i % 2 == 0:
                measure_alone(paused, lone)
                out["singles"].append(single_client(*targets[lone], args.single_requests))
            roles = between(i) if between else roles
    finally:
        for proc in paused.values():  # every server left running
            os.killpg(proc.pid, signal.SIGCONT)
    return warm


def bench_servers(
    env: dict, key: str, artifact: str, images: list[bytes], args, log_dir: Path
) -> dict:
    """Rounds that alternate the same concurrent load between ChannelHub and LitServe (the idle
    one stopped), single clients on ChannelHub between them; then rounds between the twins with
    and without rollups (both up, nothing else), crossed over."""
    headers = {"X-API-Key": key}
    bodies, peer_bodies = [multipart(i) for i in images], [json_upload(i) for i in images]
    out: dict = {"with": [], "peer": [], "twin": [], "without": [], "singles": []}
    hub_runs = []
    procs = []
    try:
        hub, url = start_api(env, log_dir / "channelhub.log", args.workers)
        procs.append(hub)
        peer, peer_url = start_litserve(env, artifact, args, log_dir / "litserve.log")
        procs.append(peer)
        hub_runs.append(single_client(url, headers, bodies, 100))
        single_client(peer_url, {}, peer_bodies, 100)
        targets = {"with": (url, headers, bodies), "peer": (peer_url, {}, peer_bodies)}
        paused = {"with": hub, "peer": peer}  # LitServe's idle workers poll their queues
        hub_runs.append(run_rounds(targets, args, out, paused=paused, lone="with")[0])
    finally:
        for proc in procs:
            stop_process(proc)  # a clean shutdown: nothing acknowledged is left unwritten
    procs = []
    try:
        twin, twin_url = start_api(env, log_dir / "twin-a.log", args.workers, twin_rollups=True)
        procs.append(twin)
        bare, bare_url = start_api(env, log_dir / "twin-b.log", args.workers, twin_rollups=False)
        procs.append(bare)
        targets = {"twin": (twin_url, headers, bodies), "without": (bare_url, headers, bodies)}
        hub_runs += [single_client(u, h, b, 100) for u, h, b in targets.values()]

        def crossover(i: int) -> dict:
            switch_rollups([twin, bare])  # odd rounds: the twins' settings are swapped
            return {"twin": "without", "without": "twin"} if i % 2 == 0 else {}

        # Twice the rounds: a round of the pair is short, and a few per cent is the effect.
        hub_runs += run_rounds(targets, args, out, between=crossover, rounds=2 * args.rounds)
    finally:
        for proc in procs:
            stop_process(proc)
    hub_runs += [*out["singles"], *out["with"], *out["twin"], *out["without"]]
    out["answered"] = sum(r["answered"] for r in hub_runs)
    out["failed"] = sum(r["failed"] for r in hub_runs)
    return out


def median_of(runs: list[dict], key: str) -> float:
    return round(float(np.median([r[key] for r in runs])), 2)


def paired_ratio(out: dict, name: str, other: str) -> float:
    """The median over rounds of `name`'s requests/s ÷ `other`'s in the same round. The two
    run back to back, so a slower minute of the shared machine hits both; the machine's speed
    swung by a quarter between rounds, too much for a ratio of medians taken rounds apart."""
    ratios = [a["rps"] / b["rps"] for a, b in zip(out[name], out[other], strict=True) if b["rps"]]
    return float(np.median(ratios)) if ratios else float("inf")


def bench_naive(env: dict, artifact: str, bodies: list, args, log_dir: Path) -> dict:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--naive-server", artifact,
           "--port", str(port)]  # fmt: skip
    proc = start(cmd, env, f"http://127.0.0.1:{port}/openapi.json", log_dir / "naive.log")
    try:
        url = f"http://127.0.0.1:{port}/predict"
        single_client(url, {}, bodies, 5)  # warm-up: the first predict call traces the model
        return asyncio.run(
            load(url, {}, bodies, args.clients, args.naive_requests or args.requests)
        )
    finally:
        stop_process(proc)


def registry_env(home: Path) -> dict[str, str]:
    """The variables that point a process at the registry under `home`."""
    return {"DATABASE_URL": f"sqlite:///{home / 'channelhub.db'}", "CHANNELHUB_HOME": str(home),
            "CHANNELHUB_ARTIFACTS": str(home / "artifacts")}  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="channelhub-bench-") as tmp:
        home = Path(tmp)
        os.environ.update(registry_env(home))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        url, key, artifact, images = build_registry(home, args.epochs)
        out = bench_servers(env, key, artifact, images, args, home)
        answered = out["answered"]
        stored = stored_predictions(url, answered)
        bodies = [multipart(image) for image in images]
        naive = bench_naive(env, artifact, bodies, args, home) if args.naive_requests else None
    hub = {k: median_of(out["with"], k) for k in ("rps", "p50_ms", "p95_ms", "p99_ms")}
    peer = {k: median_of(out["peer"], k) for k in ("rps", "p50_ms", "p99_ms")}
    peer_ratio, kept = paired_ratio(out, "with", "peer"), paired_ratio(out, "twin", "without")
    print(f"peer ratio {peer_ratio:.2f}x (LitServe {peer['rps']} rps, p99 {peer['p99_ms']} ms); "
          f"twin with rollups ÷ without {kept:.3f}; stored {stored} of {answered} answered",
          flush=True)  # fmt: skip
    result = {
        "peer_ratio": round(peer_ratio, 3), "rps": hub["rps"], "peer_rps": peer["rps"],
        "p50_ms": hub["p50_ms"], "p95_ms": hub["p95_ms"], "p99_ms": hub["p99_ms"],
        "peer_p50_ms": peer["p50_ms"], "peer_p99_ms": peer["p99_ms"],
        "single_client_p50_ms": median_of(out["singles"], "p50_ms"),
        "single_client_p50_samples": [r["p50_ms"] for r in out["singles"]],
        "failed": out["failed"],
        "peer_failed": sum(r["failed"] for r in out["peer"]),
        "stored": stored, "answered": answered, "stored_equals_answered": stored == answered,
        "rollup_ratio": round(kept, 3), "workers": args.workers,
        "rounds_rps": [r["rps"] for r in out["with"]],
        "peer_rounds_rps": [r["rps"] for r in out["peer"]],
        "twin_rollups_rps": [r["rps"] for r in out["twin"]],
        "twin_no_rollups_rps": [r["rps"] for r in out["without"]],
    }  # fmt: skip
    if naive is not None:
        print_row(f"naive {args.clients} clients", naive)
        ratio = round(hub["rps"] / naive["rps"], 2) if naive["rps"] else None
        result.update(naive_rps=naive["rps"], naive_p50_ms=naive["p50_ms"], throughput_ratio=ratio)
    return result


def main() -> None:
    from core.serving.settings import default_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds of ChannelHub, LitServe, the twins (default 10)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="ChannelHub's serving processes (default: one per core)")  # fmt: skip
    parser.add_argument("--naive-requests", type=int, default=500,
                        help="requests for the naive endpoint (0: leave it out)")  # fmt: skip
    parser.add_argument("--single-requests", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--peer-batch-timeout", type=float, default=0.002,
                        help="LitServe's batch timeout, s (default its best, 2 ms)")  # fmt: skip
    parser.add_argument("--naive-server", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--litserve-server", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--api-twin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="warning", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.workers < 1:
        parser.error("--rounds and --workers must be at least 1")
    if args.api_twin:
        from core.serving.api import run_server

        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # inherited by the workers until they
        # install create_twin_app's switch
        run_server(port=args.port, workers=args.workers, log_level=args.log_level,
                   app="bench.serving:create_twin_app")  # fmt: skip
        return
    if args.litserve_server:
        from bench.litserve_peer import run_litserve

        run_litserve(args.litserve_server, args.port, 32, args.peer_batch_timeout)
        return
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.naive_server), host="127.0.0.1", port=args.port,
                    log_level="warning", access_log=False)  # fmt: skip
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
