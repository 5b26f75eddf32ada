"""The prediction log's write on SQLite: rows and rollups in one transaction, in plain SQL.

The serving API answers a prediction only once its row is committed, so this write sits on every
request's path. Through the ORM it cost a few milliseconds a batch (statement compilation, unit of
work, a pool ping per checkout); here one kept DBAPI connection runs three prepared statements.
Two serving processes take turns through a file lock beside the database: SQLite's own busy
handler sleeps 1, 2, 5, 10 … ms between tries, a lock file wakes the waiter when the lock is free.
The WAL is checkpointed by a background thread, not by the commit that happens to cross SQLite's
threshold: that commit waited for the copy and its fsync, and every request behind it (p99 spikes
of 400 ms under load).
PostgreSQL keeps the ORM path (`insert_predictions`, `add_to_rollups`), whose row locks need it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from db.engine import SQLITE_BUSY_TIMEOUT_MS, configure_sqlite
from db.files import create_private_file
from db.models import Rollup
from db.repo.predictions import PredictionRecord
from db.repo.rollups import HISTOGRAMS, VALUES, RollupDelta, merged_values, rollup_work

log = logging.getLogger("channelhub.serving")
CHECKPOINT_INTERVAL_S = 1.0

_COLUMNS = ("id", "channel_id", "version_id", "arm", "predicted_class", "confidence",
            "probabilities", "latency_ms", "input_path", "created_at", "simulated",
            "input_digest")  # fmt: skip
INSERT_PREDICTIONS = (
    f"INSERT INTO predictions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
# Needs the write lock (a read-only database refuses it) and changes nothing.
PROBE = "DELETE FROM predictions WHERE 0 = 1"
_KEY = ("channel_id", "version_id", "arm", "resolution_s", "bucket_start")
SELECT_ROLLUP = (
    f"SELECT id, {', '.join(VALUES)} FROM {Rollup.__tablename__} "
    f"WHERE {' AND '.join(f'{c} = ?' for c in _KEY)}"
)
UPDATE_ROLLUP = (
    f"UPDATE {Rollup.__tablename__} SET {', '.join(f'{c} = ?' for c in VALUES)} WHERE id = ?"
)
INSERT_ROLLUP = (
    f"INSERT INTO {Rollup.__tablename__} ({', '.join((*_KEY, *VALUES))}) "
    f"VALUES ({', '.join('?' * (len(_KEY) + len(VALUES)))})"
)


def sqlite_file(database_url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL; None for other databases, memory or URIs."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return None
    path = database_url[len(prefix) :]
    if not path or path.startswith((":memory:", "file:")) or "?" in path:
        return None
    return Path(path)


def sqlite_timestamp(at: datetime) -> str:
    """How SQLAlchemy's DateTime stores a (UTC) datetime in SQLite, to the microsecond."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def _prediction_row(r: PredictionRecord) -> tuple:
    return (r.id, r.channel_id, r.version_id, r.arm, r.predicted_class, r.confidence,
            json.dumps(r.probabilities), r.latency_ms, r.input_path,
            sqlite_timestamp(r.created_at), int(r.simulated), r.input_digest)  # fmt: skip


def _merged_values(stored: tuple | None, delta: RollupDelta) -> list:
    """The bucket's VALUES, as stored, once `delta` is added to the `stored` row (histograms are
    JSON text in SQLite)."""
    before = dict(zip(VALUES, stored, strict=True)) if stored else {}
    for name in HISTOGRAMS:
        before[name] = json.loads(before.get(name) or "[]")
    merged = merged_values(before, delta)
    return [json.dumps(merged[n]) if n in HISTOGRAMS else merged[n] for n in VALUES]


def _connect_to(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False, isolation_level=None)  # fmt: skip
    configure_sqlite(conn, None)
    return conn


class _Checkpointer:
    """Copies the WAL back into the database every `interval_s` (PASSIVE: never waits for,
    nor blocks, readers and writers)."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        while not self._stop.wait(self.interval_s):
            try:
                conn = conn or _connect_to(self.path)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # the next pass tries again on a new connection
                log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                conn = None
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class SQLiteLogWriter:
    """One kept connection to a SQLite registry that commits batches of predictions with their
    rollups; `write` raises the driver's error (the caller retries or refuses the batch)."""

    def __init__(self, path: Path, *, checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".log-lock")
        self._conn: sqlite3.Connection | None = None
        self._lock_file = None
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpointer: _Checkpointer | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _connect_to(self.path)
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
            self._conn = conn
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.path, self._checkpoint_interval_s)
        return self._conn

    def _lock(self):
        if self._lock_file is None:
            create_private_file(self._lock_path)
            self._lock_file = self._lock_path.open("r+b")
        return self._lock_file

    def write(
        self, records: list[PredictionRecord], deltas: list[RollupDelta], *, probe: bool = False
    ) -> None:
        """Insert `records` and add `deltas` to their rollups in one transaction; `probe`: write
        nothing, but fail as a write would (a statement that needs the write lock, rolled back)."""
        lock = self._lock()
        fcntl.flock(lock, fcntl.LOCK_EX)  # releases the GIL while it waits
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if probe:
                    conn.execute(PROBE)
                    conn.execute("ROLLBACK")
                    return
                conn.executemany(INSERT_PREDICTIONS, [_prediction_row(r) for r in records])
                self._add_rollups(conn, deltas)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            self.close_connection()  # a fresh one next time (the file may have been replaced)
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _add_rollups(conn: sqlite3.Connection, deltas: list[RollupDelta]) -> None:
        for (channel, version, arm, resolution, start), delta in rollup_work(deltas).items():
            key = (channel, version, arm, resolution, sqlite_timestamp(start))
            stored = conn.execute(SELECT_ROLLUP, key).fetchone()
            if stored is None:
                conn.execute(INSERT_ROLLUP, (*key, *_merged_values(None, delta)))
            else:
                conn.execute(UPDATE_ROLLUP, (*_merged_values(stored[1:], delta), stored[0]))

    def close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self) -> None:
        self.close_connection()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
