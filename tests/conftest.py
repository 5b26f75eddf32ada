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
