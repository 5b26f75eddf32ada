"""Child processes of the benchmarks: start one with its output in a log file and wait until it
answers (the API, the dashboard), so every bench starts its services the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 600.0  # a busy 2-core machine took over 3 minutes to start the API


def start_process(
    cmd: list[str],
    env: dict,
    log_path: Path,
    ready_url: str | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> subprocess.Popen:
    """A child process logging to `log_path`; with `ready_url`, returns once it answers 200."""
    with log_path.open("w") as log_file:
        # Its own process group: stop_process reaches the children it starts (LitServe's
        # inference workers outlived a plain terminate and kept polling their queues).
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + ready_timeout_s
    while ready_url and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    if ready_url:
        proc.kill()
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{cmd} not ready in {ready_timeout_s:.0f} s:\n{tail}")
    return proc


def stop_process(proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM to the process and everything it started (a clean shutdown), SIGKILL after
    `timeout_s`."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children left behind after the leader exited
    except ProcessLookupError:
        pass
