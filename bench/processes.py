"""Child processes of the benchmarks: start one with its output in a log file and wait until it
answers (the API, the dashboard), so every bench starts its services the same way."""

from __future__ import annotations

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
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file)
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
