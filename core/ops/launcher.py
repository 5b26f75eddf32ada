"""`channelhub up`: worker, serving API, controller and dashboard as child processes, stopped
together."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Found by path: core never imports the dashboard package.
DASHBOARD_APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--no-worker", action="store_true", help="do not start a training worker")


def child_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    commands = {
        "api": [sys.executable, "-m", "core.ops.cli", "serve",
                "--host", args.host, "--port", str(args.api_port)],
        "dashboard": [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP),
                      "--server.address", args.host, "--server.port", str(args.dashboard_port),
                      "--server.headless", "true", "--browser.gatherUsageStats", "false",
                      "--client.toolbarMode", "minimal"],
    }  # fmt: skip
    commands["controller"] = [sys.executable, "-m", "core.ops.controller"]
    if not args.no_worker:
        commands["worker"] = [sys.executable, "-m", "core.training.worker"]
    return commands


def stop_all(children: dict[str, subprocess.Popen], grace_s: float = 15.0) -> None:
    """SIGTERM everyone (the worker ends its epoch, the API flushes its log), then SIGKILL."""
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in {grace_s:.0f} s; killing it", file=sys.stderr)
            proc.kill()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def sign_in_missing(host: str) -> str | None:
    """Why the dashboard may not listen on `host`: beyond loopback it needs a user to sign in."""
    from db.engine import session_scope
    from db.queries.users import count_enabled_users

    if host in LOOPBACK_HOSTS:
        return None
    with session_scope() as s:
        if count_enabled_users(session=s):
            return None
    return (
        f"refusing to listen on {host}: no user can sign in yet. Add one first with "
        "`channelhub user add NAME --role admin` (or build the demo's users with `channelhub demo`)"
    )


def api_url(host: str, port: int) -> str:
    """Where a process on this machine reaches an API bound to `host` (any address: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_up(args: argparse.Namespace) -> int:
    from db.engine import get_engine
    from db.settings import settings

    get_engine()  # migrate once here, not three times in parallel
    refusal = sign_in_missing(args.host)
    if refusal:
        print(f"channelhub up: {refusal}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if not settings().api_urls:  # the dashboard shows this API's /readyz
        env["CHANNELHUB_API_URL"] = api_url(args.host, args.api_port)
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in child_commands(args).items()}
    print(
        f"\nChannelHub is starting:\n"
        f"  dashboard  http://{args.host}:{args.dashboard_port}\n"
        f"  API        http://{args.host}:{args.api_port}   (docs: /docs)\n"
        f"  worker     {'running' if 'worker' in children else 'not started'}\n"
        f"  controller running (live SLOs, alerts, lost jobs)\n"
        f"Press Ctrl-C to stop everything.\n",
        flush=True,
    )
    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        while all(p.poll() is None for p in children.values()):
            time.sleep(0.5)
        gone = [n for n, p in children.items() if p.poll() is not None]
        print(f"{', '.join(gone)} exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop_all(children)
