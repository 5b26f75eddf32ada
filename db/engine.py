"""Engine and unit-of-work helpers; SQLite gets WAL, a busy timeout and foreign keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.files import create_private_file, make_private_dir
from db.settings import artifact_dir, database_url

SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}
_upgraded: set[str] = set()
_lock = threading.Lock()


def configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str) -> Engine:
    """A new engine for `url` (a SQLite file is created 0600, its folder 0700)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        # A "file:…?mode=ro&uri=true" URL opens an existing file as SQLite's URI: never create it.
        if path and not path.startswith((":memory:", "file:")):
            # SQLite gives its -wal and -shm files the database file's mode.
            create_private_file(Path(path))
        engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None, *, upgrade: bool = True) -> Engine:
    """The process-wide engine for `url` (default `DATABASE_URL`), upgraded to the newest schema;
    the artifact folder is created private on the way."""
    url = url or database_url()
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
            _factories[url] = sessionmaker(bind=_engines[url], expire_on_commit=False)
        engine = _engines[url]
        if upgrade and url not in _upgraded:
            make_private_dir(artifact_dir())
            from db.migrate import upgrade_database

            upgrade_database(engine)
            _upgraded.add(url)
    return engine


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    url = url or database_url()
    get_engine(url)
    session = _factories[url]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every pooled connection (tests, forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
        _upgraded.clear()
