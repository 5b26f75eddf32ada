"""A throwaway PostgreSQL server for the test suite, started from Debian's `postgresql` binaries.

`start_server()` runs `initdb` and `pg_ctl start` in a fresh temporary folder on a free loopback
port (trust authentication, fsync off: nothing here must survive the session). initdb and
postgres refuse to run as root, so under root they run as the `postgres` system user that the
Debian package creates. `template_database()` migrates one database to the newest schema once;
each test then gets `CREATE DATABASE … TEMPLATE` of it (tens of milliseconds) and drops it after.

`find_bin_dir()` says where the binaries are, or why there are none; the fixtures in conftest.py
turn "none" into a skip outside CI and a failure with `CI=true`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

SERVICE_USER = "postgres"
DRIVER = "postgresql+psycopg"
TEMPLATE = "channelhub_template"
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=200"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def find_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl: $CHANNELHUB_PG_BIN, the newest
    /usr/lib/postgresql/*/bin, or PATH."""
    if os.environ.get("CHANNELHUB_PG_BIN"):
        candidates = [Path(os.environ["CHANNELHUB_PG_BIN"])]
    else:
        found = glob.glob("/usr/lib/postgresql/*/bin")
        candidates = [Path(p) for p in sorted(found, key=lambda p: int(p.split("/")[-2]))][::-1]
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, PATH"
    raise PostgresUnavailable(
        f"PostgreSQL is not installed (no initdb and pg_ctl in {searched}): "
        "`apt-get install -y postgresql`, or set CHANNELHUB_PG_BIN"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{SERVICE_USER}' user to run PostgreSQL as"
        ) from None
    return ["runuser", "-u", SERVICE_USER, "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(_as_service_user(cmd), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed: {(done.stderr or done.stdout)[-1500:]}")


@dataclass
class PostgresServer:
    """A running server; `url(name)` is a SQLAlchemy URL for one of its databases."""

    bin_dir: Path
    root: Path
    port: int
    template: str = ""
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        finally:
            engine.dispose()

    def create_database(self, template: str | None = None) -> str:
        """A new, empty (or template-copied) database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending any connection a test (or its subprocess) left open."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        subprocess.run(
            _as_service_user([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """initdb + start in a new temporary folder on a free port; raises PostgresUnavailable."""
    bin_dir = find_bin_dir()
    # Not under pytest's tmp folder: that one is 0700 root, which the service user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="channelhub-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(root, SERVICE_USER)
        except LookupError:
            raise PostgresUnavailable(
                f"running as root and there is no {SERVICE_USER!r} user"
            ) from None
    data = str(root / "data")
    initdb = [str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", SERVICE_USER]
    _run([*initdb, "-E", "UTF8", "--no-sync", "--no-locale"], "initdb")
    for _ in range(5):  # another process may take the free port between asking and binding
        port = free_port()
        options = f"-p {port} -k {root} {_SERVER_OPTIONS}"
        start = [str(bin_dir / "pg_ctl"), "-D", data, "-l", str(root / "server.log"), "-w"]
        try:
            _run([*start, "-o", options, "start"], "pg_ctl start")
            return PostgresServer(bin_dir, root, port)
        except PostgresUnavailable as error:
            last = error
    log = (root / "server.log").read_text(errors="replace")[-1500:]
    shutil.rmtree(root, ignore_errors=True)
    raise PostgresUnavailable(f"{last}\n{log}")


def template_database(server: PostgresServer) -> str:
    """A database migrated to the newest schema, for `CREATE DATABASE … TEMPLATE`."""
    from db.engine import make_engine
    from db.migrate import upgrade_database

    server.execute(f'CREATE DATABASE "{TEMPLATE}"')
    engine = make_engine(server.url(TEMPLATE))
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()  # a template must have no open connection when it is copied
    return TEMPLATE
