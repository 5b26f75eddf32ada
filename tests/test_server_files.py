"""The files a server of several workers shares: a killed server's are removed by the next start."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from core.serving.api import remove_stale_server_files
from core.serving.balance import shares_path
from core.serving.shared_limiter import shared_limits_path


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_files_of_gone_servers_and_of_this_pid_are_removed(temp_folder):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    gone_pid = int(gone.stdout)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [shared_limits_path(gone_pid), shares_path(gone_pid), shares_path(os.getpid())]
        live = [shared_limits_path(running.pid), shares_path(running.pid)]
        others = [
            temp_folder / "channelhub-serve-x1.limits",
            temp_folder / f"channelhub-serve-{gone_pid}.txt",
        ]
        for path in (*stale, *live, *others):
            path.write_bytes(b"\0" * 16)

        removed = remove_stale_server_files()

        assert sorted(removed) == sorted(stale)
        assert all(not p.exists() for p in stale)
        assert all(p.exists() for p in (*live, *others))
    finally:
        running.kill()
        running.wait()
