"""Shared fixtures: every test that touches the registry gets its own real SQLite file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated SQLite registry under tmp_path; DATABASE_URL and CHANNELHUB_HOME point
    at it for code (and subprocesses) under test. Yields the database URL."""
    from db.engine import dispose_engines, get_engine

    home = tmp_path / "var"
    url = f"sqlite:///{home / 'channelhub.db'}"
    monkeypatch.setenv("CHANNELHUB_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)
    dispose_engines()
    get_engine(url)
    yield url
    dispose_engines()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`channelhub demo --quick` built once per test session in a real subprocess: channels,
    two trained versions, traffic through the real API, feedback and a few annotations."""
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("demo") / "var"
    env = dict(os.environ)
    env.update(CHANNELHUB_HOME=str(home), DATABASE_URL=f"sqlite:///{home / 'channelhub.db'}")
    env.pop("CHANNELHUB_ARTIFACTS", None)
    cmd = [sys.executable, "-m", "core.ops.cli", "demo", "--quick", "--traffic-seconds", "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home


@pytest.fixture
def demo_registry(
    demo_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private copy of the demo registry (database + artifacts) for one test; yields its home."""
    import shutil

    from db.engine import dispose_engines

    home = tmp_path / "var"
    shutil.copytree(demo_template, home)  # -wal/-shm files travel with the database
    monkeypatch.setenv("CHANNELHUB_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{home / 'channelhub.db'}")
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)
    dispose_engines()
    yield home
    dispose_engines()
