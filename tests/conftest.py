"""Shared fixtures: every test that touches the registry gets its own real SQLite file; tests
marked `both_databases` run again on a fresh database of a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against a real PostgreSQL server")
    config.addinivalue_line(
        "markers", "both_databases: the test's `registry` is SQLite, then PostgreSQL"
    )
    config.addinivalue_line("markers", "sqlite_only: left out of its module's both_databases")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `both_databases` runs once per backend (the PostgreSQL run is marked
    `postgres`, so `-m postgres` selects it and `-m "not postgres"` leaves it out)."""
    marked = metafunc.definition.get_closest_marker
    if (
        "registry" in metafunc.fixturenames
        and marked("both_databases")
        and not marked("sqlite_only")
    ):
        backends = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
        metafunc.parametrize("registry", backends, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """One PostgreSQL server for the session (tests/postgres.py), with a migrated template.
    Missing: a skip with the reason, or a failure with CI=true."""
    from tests.postgres import PostgresUnavailable, start_server, template_database

    try:
        server = start_server()
    except PostgresUnavailable as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no PostgreSQL server could be started: {error}", False)
        pytest.skip(f"no PostgreSQL server could be started: {error}")
    try:
        server.template = template_database(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server) -> Iterator[str]:
    """A fresh database copied from the migrated template; dropped after the test."""
    name = postgres_server.create_database(template=postgres_server.template)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


def _point_at(url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNELHUB_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)


@pytest.fixture
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh, migrated SQLite registry under tmp_path (PostgreSQL database for the
    `both_databases` tests' second run); DATABASE_URL and CHANNELHUB_HOME point at it for code
    (and subprocesses) under test. Yields the database URL."""
    from db.engine import dispose_engines, get_engine

    home = tmp_path / "var"
    if getattr(request, "param", "sqlite") == "postgres":
        url = request.getfixturevalue("postgres_database")
    else:
        url = f"sqlite:///{home / 'channelhub.db'}"
    _point_at(url, home, monkeypatch)
    dispose_engines()
    get_engine(url)
    yield url
    dispose_engines()


@pytest.fixture
def pg_registry(postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Like `registry`, always on PostgreSQL (tests only PostgreSQL needs: locks, races)."""
    from db.engine import dispose_engines, get_engine

    _point_at(postgres_database, tmp_path / "var", monkeypatch)
    dispose_engines()
    get_engine(postgres_database)
    yield postgres_database
    dispose_engines()


def shared_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every process of this run sees: the session's temporary root, or under
    pytest-xdist the root above each worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build_demo(home: Path) -> None:
    import subprocess
    import sys

    env = dict(os.environ)
    env.update(CHANNELHUB_HOME=str(home), DATABASE_URL=f"sqlite:///{home / 'channelhub.db'}")
    env.pop("CHANNELHUB_ARTIFACTS", None)
    cmd = [sys.executable, "-m", "core.ops.cli", "demo", "--quick", "--traffic-seconds", "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`channelhub demo --quick` built once per test run in a real subprocess: channels, two
    trained versions, traffic through the real API, feedback and a few annotations. Parallel
    workers (pytest-xdist) take turns on a lock file: the first builds, the others reuse it."""
    import fcntl

    root = shared_temp(tmp_path_factory)
    home, built = root / "demo" / "var", root / "demo" / "built"
    with (root / "demo.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root / "demo", ignore_errors=True)  # a failed earlier attempt
            _build_demo(home)
            built.touch()
    return home


@pytest.fixture
def demo_registry(
    demo_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private copy of the demo registry (database + artifacts) for one test; yields its home."""
    from db.engine import dispose_engines

    home = tmp_path / "var"
    shutil.copytree(demo_template, home)  # -wal/-shm files travel with the database
    monkeypatch.setenv("CHANNELHUB_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{home / 'channelhub.db'}")
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)
    dispose_engines()
    yield home
    dispose_engines()
