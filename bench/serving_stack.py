"""What uvloop, httptools and orjson each give the serving API: the same API run four ways (all
three on, as `channelhub serve` runs; then each one replaced by the standard choice: asyncio's
event loop, the h11 parser, the standard library's JSON encoder), under the same load.

Run: `python bench/serving_stack.py` (about six minutes on 2 CPU cores). It builds the registry
as bench/serving.py does (`seed-cnn`, one epoch on the digits), copies it once per variant (a
stopped server must not hold a shared registry's write lock), starts the four servers with
`--workers` (default one per core), and runs rounds in which each server in turn gets 32 clients ×
2,000 requests while the others are stopped (SIGSTOP), the order rotating; then single-client
samples of each, alternating. For each library it prints the requests/s of all three on ÷ the
variant without it (the median of the rounds' ratios, each taken back to back) and the single
client's p50 without it against all on. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import stop_process  # noqa: E402  (beside this file)
from serving import (  # noqa: E402
    REPO_ROOT,
    build_registry,
    free_port,
    measure_alone,
    median_of,
    multipart,
    paired_ratio,
    registry_env,
    run_rounds,
    single_client,
    start,
)

# name -> (event loop, HTTP parser, JSON encoder)
VARIANTS = {
    "all": ("uvloop", "httptools", "orjson"),
    "no_uvloop": ("asyncio", "httptools", "orjson"),
    "no_httptools": ("uvloop", "h11", "orjson"),
    "no_orjson": ("uvloop", "httptools", "json"),
}


def create_stack_app():
    """The serving app; with BENCH_STDLIB_JSON=1 its prediction answers are encoded as
    Starlette's JSONResponse encodes (the standard library) instead of by orjson."""
    from core.serving.app import create_app

    if os.environ.get("BENCH_STDLIB_JSON") == "1":
        from core.serving.routes.predictions import OrjsonResponse

        def render(self, content) -> bytes:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                              separators=(",", ":")).encode("utf-8")  # fmt: skip

        OrjsonResponse.render = render
    return create_app()


def start_variant(name: str, home: Path, args) -> tuple:
    loop, http, encoder = VARIANTS[name]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **registry_env(home),
           "BENCH_STDLIB_JSON": "1" if encoder == "json" else "0"}  # fmt: skip
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--server", name, "--port", str(port),
           "--workers", str(args.workers)]  # fmt: skip
    proc = start(cmd, env, f"http://127.0.0.1:{port}/readyz", home / "server.log")
    return proc, f"http://127.0.0.1:{port}/v1/channels/bench/predict"


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="channelhub-stack-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        os.environ.update(registry_env(base))
        _, key, _, images = build_registry(base, 1)
        headers, bodies = {"X-API-Key": key}, [multipart(i) for i in images]
        procs, targets = {}, {}
        try:
            for name in VARIANTS:
                home = Path(tmp) / name
                shutil.copytree(base, home)
                procs[name], url = start_variant(name, home, args)
                targets[name] = (url, headers, bodies)
                single_client(url, headers, bodies, 100)  # traces the model's batch sizes
            out: dict = {name: [] for name in VARIANTS}
            run_rounds(targets, args, out, paused=procs)
            singles: dict = {name: [] for name in VARIANTS}
            names = list(VARIANTS)
            for i in range(args.single_samples):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    measure_alone(procs, name)
                    singles[name].append(
                        single_client(*targets[name], args.single_requests)["p50_ms"]
                    )
        finally:
            for proc in procs.values():  # none left stopped: each shuts down cleanly
                os.killpg(proc.pid, signal.SIGCONT)
                stop_process(proc)
    failed = sum(r["failed"] for runs in out.values() for r in runs)
    result: dict = {"workers": args.workers, "rounds": args.rounds, "failed": failed}
    all_single = float(np.median(singles["all"]))
    result["rps_all"] = median_of(out["all"], "rps")
    result["single_client_p50_ms_all"] = round(all_single, 2)
    for name, library in (("no_uvloop", "uvloop"), ("no_httptools", "httptools"),
                          ("no_orjson", "orjson")):  # fmt: skip
        ratio = round(paired_ratio(out, "all", name), 3)
        single = round(float(np.median(singles[name])), 2)
        print(f"{library:<10} requests/s with ÷ without {ratio:.3f}; single-client p50 "
              f"{all_single:.2f} ms with, {single:.2f} ms without", flush=True)  # fmt: skip
        result[f"{library}_rps_ratio"] = ratio
        result[f"single_client_p50_ms_without_{library}"] = single
    result["rounds_rps"] = {name: [r["rps"] for r in runs] for name, runs in out.items()}
    result["single_client_samples"] = singles
    return result


def main() -> None:
    from core.serving.settings import default_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--single-samples", type=int, default=4)
    parser.add_argument("--single-requests", type=int, default=300)
    parser.add_argument("--server", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        from core.serving.api import run_server

        loop, http, _ = VARIANTS[args.server]
        run_server(port=args.port, workers=args.workers, log_level="warning",
                   app="bench.serving_stack:create_stack_app", loop=loop, http=http)  # fmt: skip
        return
    os.chdir(REPO_ROOT)
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
