"""Every action is a CLI command, the commands write one audit row each, and the CLI is fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from core.actions.base import all_actions
from core.ops.cli import ACTION_COMMANDS, main
from db.engine import session_scope
from db.queries.lookups import list_events
from tests.registry_helpers import add_dataset, add_model_with_version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_action_has_a_command():
    missing = sorted(set(all_actions()) - set(ACTION_COMMANDS))
    assert not missing, f"actions without a CLI command (add them to ACTION_COMMANDS): {missing}"
    assert not set(ACTION_COMMANDS) - set(all_actions()), "a command names no action"


@pytest.mark.parametrize("words", sorted(set(ACTION_COMMANDS.values())))
def test_each_action_command_parses(words: str, capsys):
    with pytest.raises(SystemExit) as done:
        main([*words.split(), "--help"])
    assert done.value.code == 0
    assert "usage: channelhub " + words in capsys.readouterr().out


def test_an_unknown_command_word_does_not_parse(capsys):
    with pytest.raises(SystemExit) as done:
        main(["channel", "canary-begin", "--help"])
    assert done.value.code == 2


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _last_event(object_type: str):
    with session_scope() as s:
        return list_events(session=s, object_type=object_type, limit=1)[0]


def test_channel_commands_audit_settings_and_canary(registry, capsys, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_USER", "cli-ann")
    with session_scope() as s:
        model, version = add_model_with_version(s, add_dataset(s))
    assert run(capsys, "channel", "create", "web", "--model", model.name)[0] == 0
    code, out, _ = run(capsys, "channel", "update", "web", "--min-accuracy", "0.9",
                       "--max-p95-ms", "120", "--reason", "tighter SLO")  # fmt: skip
    assert code == 0 and "min accuracy=0.9" in out
    event = _last_event("channel")
    assert (event.action, event.actor) == ("channel.update", "cli-ann")
    assert event.details["after"] == {"slo_min_accuracy": 0.9, "slo_max_p95_ms": 120.0}
    assert event.details["reason"] == "tighter SLO"
    code, out, _ = run(capsys, "channel", "canary-start", "web", "--version-id",
                       str(version.id), "--traffic", "25")  # fmt: skip
    assert code == 0 and "25% of requests" in out
    assert _last_event("channel").action == "channel.start_canary"
    assert run(capsys, "channel", "canary-end", "web", "--reason", "done")[0] == 0
    assert _last_event("channel").details["after"] == {"version_id": None, "traffic": 0.0}
    code, _, err = run(capsys, "channel", "canary-end", "web")
    assert code == 2 and "no canary" in err
    code, _, err = run(capsys, "channel", "update", "web", "--min-accuracy", "high")
    assert code == 2 and "must be a number" in err
    code, out, _ = run(capsys, "audit", "--action", "channel")
    assert code == 0 and "channel.end_canary" in out and "channel.create" in out


def test_feedback_commands_annotate_and_bulk_annotate_by_filter(registry, capsys):
    from tests.test_actions import _feedback_items

    with session_scope() as s:
        _, version = add_model_with_version(s, add_dataset(s))
    run(capsys, "channel", "create", "web")
    run(capsys, "channel", "create", "mobile")
    with session_scope() as s:
        from db.queries.lookups import get_channel

        web, mobile = (get_channel(session=s, slug=slug).id for slug in ("web", "mobile"))
    web_ids = _feedback_items(web, version.id, 3)
    mobile_ids = _feedback_items(mobile, version.id, 2)
    code, out, _ = run(capsys, "feedback", "annotate", str(web_ids[1]), "--verdict", "corrected",
                       "--true-class", "4", "--note", "a four")  # fmt: skip
    assert code == 0 and "corrected (class 4)" in out
    assert _last_event("feedback").action == "feedback.annotate"
    code, out, _ = run(capsys, "feedback", "bulk-annotate", "--channel", "web",
                       "--verdict", "rejected")  # fmt: skip
    assert code == 0 and "stored rejected on 2 items" in out  # the corrected one is not pending
    event = _last_event("feedback")
    assert event.action == "feedback.bulk_annotate"
    assert sorted(event.details["feedback_ids"]) == [web_ids[0], web_ids[2]]
    code, out, _ = run(capsys, "feedback", "bulk-annotate", *map(str, mobile_ids),
                       "--verdict", "rejected")  # fmt: skip
    assert code == 0 and "on 2 items" in out
    code, _, err = run(capsys, "feedback", "bulk-annotate", "--verdict", "rejected")
    assert code == 2 and "name feedback ids" in err
    assert "(none)" in run(capsys, "feedback", "list")[1]


def test_read_commands_list_workers_and_audit(registry, capsys):
    assert run(capsys, "init")[0] == 0
    assert _last_event("dataset").action == "dataset.register_builtin"
    assert run(capsys, "workers")[1].strip().endswith("(none)")
    code, out, _ = run(capsys, "audit")
    assert code == 0 and "dataset.register_builtin" in out
    assert run(capsys, "models", "create", "m2")[0] == 0
    assert _last_event("model").action == "model.create"


def test_help_is_fast_and_silent():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "core.ops.cli", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and "channel" in done.stdout
    assert elapsed < 2.0, f"channelhub --help took {elapsed:.1f} s"
    noisy = [
        line for line in done.stderr.splitlines()
        if "onednn" in line.lower() or "tensorflow" in line.lower()
    ]  # fmt: skip
    assert not noisy, noisy


def test_importing_the_cli_loads_no_keras_or_tensorflow():
    code = (
        "import core.ops.cli, sys; "
        "heavy = [m for m in ('keras', 'tensorflow', 'sqlalchemy', 'fastapi', 'streamlit', "
        "'pandas') if m in sys.modules]; assert not heavy, heavy"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_alert_commands_open_acknowledge_clear(registry, capsys):
    run(capsys, "channel", "create", "web")
    code, out, _ = run(capsys, "alerts", "open", "--channel", "web", "--signal", "drift",
                       "--message", "class mix moved")  # fmt: skip
    assert code == 0 and "alert 1 open on web" in out
    assert "drift" in run(capsys, "alerts")[1]
    assert run(capsys, "alerts", "acknowledge", "1")[0] == 0
    assert run(capsys, "alerts", "clear", "1", "--reason", "recovered")[0] == 0
    assert _last_event("channel").action == "alert.clear"
    assert run(capsys, "alerts")[1].strip().endswith("(none)")
