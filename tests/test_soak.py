"""bench/soak.py for a minute: mixed work on one SQLite file loses nothing it acknowledged and
never shows "database is locked" (a real API, worker, training job, promotion and page loads)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def soak_module():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_summary_counts_what_was_lost_and_locked(registry, tmp_path):
    soak = soak_module()
    tally = soak.Tally()
    tally.predictions["never-stored"] = "web"
    tally.feedback[12345] = "never-stored"
    tally.problem("page overview", "OperationalError: database is locked")
    log = tmp_path / "api.log"
    log.write_text("sqlite3.OperationalError: database is locked\n")
    result = soak.summary(tally, soak.Orchestra(), 1.0, [log, tmp_path / "absent.log"])
    assert (result["acknowledged_predictions"], result["stored_predictions"]) == (1, 0)
    assert (result["lost_predictions"], result["lost_feedback"]) == (1, 1)
    assert result["lock_errors"] == 2 and result["ok"] is False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_one_minute_soak_loses_nothing(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "60", "--rate", "20",
           "--home", str(tmp_path / "soak")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=840)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1])
    assert "error" not in result, result["error"]
    logs = "\n".join(
        (tmp_path / "soak" / name).read_text()[-2000:] for name in ("api.log", "worker.log")
    )
    assert result["errors_5xx"] == 0, result
    assert result["lock_errors"] == 0, (result, logs)
    assert result["lost_predictions"] == 0 and result["lost_feedback"] == 0, result
    assert result["acknowledged_predictions"] > 100 and result["acknowledged_feedback"] > 10
    assert result["stored_predictions"] == result["acknowledged_predictions"]
    assert result["missing_inputs"] == 0
    assert result["annotations"] > 0 and result["page_loads"] > 0, result
    assert result["training_job"] == "succeeded" and result["promoted_version_served"], logs
    assert done.returncode == 0 and result["ok"], result
