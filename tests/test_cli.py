"""The `channelhub` command line, run in-process against a real SQLite registry."""

from __future__ import annotations

import re

import pytest

from core.ops.cli import main
from db.engine import session_scope
from db.repo import channels, jobs


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_registers_digits_once(registry, capsys):
    assert run(capsys, "init")[0] == 0
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "digits" in out and "1797" in out
    run(capsys, "init")
    assert run(capsys, "datasets")[1].count("\ndigits ") == 1


def test_enqueue_refuses_absurd_values_with_the_range(registry, capsys):
    run(capsys, "init")
    code, _, err = run(capsys, "enqueue", "--epochs", "100000")
    assert code == 2 and "epochs must be between 1 and 500" in err
    code, _, err = run(capsys, "enqueue", "--dataset", "nope")
    assert code == 2 and "dataset 'nope' does not exist" in err
    with session_scope() as s:
        assert jobs.count_jobs(session=s) == 0
    code, out, _ = run(capsys, "enqueue", "--epochs", "3", "--device", "cpu", "--note", "hi")
    assert code == 0 and "queued job 1" in out
    with session_scope() as s:
        job = jobs.get_job(session=s, job_id=1)
    assert (job.hyperparameters["epochs"], job.device_request, job.note) == (3, "cpu", "hi")
    assert run(capsys, "jobs", "cancel", "1")[1].strip() == "job 1: cancelled"
    assert "job 2: queued" in run(capsys, "jobs", "retry", "1")[1]


def test_channel_keys_are_shown_once_and_rotate(registry, capsys):
    code, out, _ = run(capsys, "channel", "create", "web", "--name", "Web app")
    key = out.strip().rsplit(" ", 1)[-1]
    assert code == 0 and key.startswith("chk_")
    code, out, _ = run(capsys, "channel", "rotate-key", "web")
    new_key = out.strip().rsplit(" ", 1)[-1]
    with session_scope() as s:
        assert not channels.check_api_key(session=s, slug="web", key=key)
        assert channels.check_api_key(session=s, slug="web", key=new_key)
    listing = run(capsys, "channel", "list")[1]
    assert "web" in listing and key not in listing and new_key not in listing
    code, _, err = run(capsys, "channel", "pause", "ghost")
    assert code == 2 and "channel 'ghost' does not exist" in err


def test_adding_a_missing_folder_dataset_fails_cleanly(registry, capsys, tmp_path):
    missing = tmp_path / "nowhere"
    code, _, err = run(capsys, "datasets", "add", "--name", "x", "--location", str(missing))
    assert code == 2 and str(missing) in err


COMMANDS = (
    "init", "demo", "worker", "workers", "up", "serve", "simulate", "controller", "datasets",
    "models", "enqueue", "jobs", "channel", "feedback", "alerts", "audit",
)  # fmt: skip


def test_help_lists_every_command(capsys):
    """Each command as a whole word: `up` must not pass because `upgrade` is printed."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), f"{name} not in --help"


def test_init_never_prints_the_database_password(pg_registry, capsys, monkeypatch):
    """A PostgreSQL URL carries its password; `init` shows the URL with it masked. (The test
    server trusts local connections, so any password connects.)"""
    from db.engine import dispose_engines

    scheme, rest = pg_registry.split("://", 1)
    user, host = rest.split("@", 1)
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://{user}:s3cret-pw@{host}")
    dispose_engines()
    code, out, _ = run(capsys, "init")
    assert code == 0 and "registry  postgresql+psycopg://" in out
    assert "s3cret-pw" not in out and "***" in out
