"""Every environment variable ChannelHub reads, in one settings object.

`Settings.from_env()` reads them all at once; `VARIABLES` names each (the README's
configuration table is checked against it). The helpers below are the common reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


# Each variable and the Settings field it fills (the README's configuration table lists them all).
VARIABLES: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "CHANNELHUB_HOME": "home",
    "CHANNELHUB_ARTIFACTS": "artifacts",
    "CHANNELHUB_S3_ENDPOINT": "s3_endpoint",
    "CHANNELHUB_USER": "user",
    "CHANNELHUB_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "CHANNELHUB_MAX_PIXELS": "max_pixels",
    "CHANNELHUB_REFRESH_SECONDS": "refresh_seconds",
    "CHANNELHUB_BATCH_WAIT_MS": "batch_wait_ms",
    "CHANNELHUB_BATCH_GAP_MS": "batch_gap_ms",
    "CHANNELHUB_MAX_BATCH": "max_batch",
    "CHANNELHUB_WORKERS": "workers",
    "CHANNELHUB_FORCE_CPU": "force_cpu",
    "CHANNELHUB_SIGNIN_ATTEMPTS": "signin_attempts",
    "CHANNELHUB_LOCKOUT_MINUTES": "lockout_minutes",
    "CHANNELHUB_SESSION_HOURS": "session_hours",
    "CHANNELHUB_API_URL": "api_urls",
}

# The simulator's key for channel SLUG: CHANNELHUB_API_KEY_SLUG (dashes as underscores).
CHANNEL_KEY_PREFIX = "CHANNELHUB_API_KEY_"

# Read by libraries, not by us; documented beside ours.
LIBRARY_VARIABLES = (
    "KERAS_BACKEND",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


class SettingsError(ValueError):
    """An environment variable holds a value ChannelHub cannot use."""


def _number(env: Mapping[str, str], name: str, default: float, kind: type = int) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number (got {raw!r})") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative (got {raw!r})")
    return value


def _url_list(raw: str | None) -> tuple[str, ...]:
    """Comma-separated URLs, without blanks or a trailing slash."""
    return tuple(url.strip().rstrip("/") for url in (raw or "").split(",") if url.strip())


def is_store_url(location: str | Path) -> bool:
    """True for an object-store URL (`s3://…`, any fsspec protocol), False for a folder."""
    return isinstance(location, str) and re.match(r"^[a-z][a-z0-9+.-]*://", location) is not None


def _artifact_location(raw: str | None, home: Path) -> Path | str:
    if not raw:
        return home / "artifacts"
    return raw if is_store_url(raw) else Path(raw).resolve()


@dataclass(frozen=True)
class Settings:
    """The values of `VARIABLES` (defaults applied, paths resolved)."""

    database_url: str
    home: Path
    artifacts: Path | str  # a folder, or an object-store URL such as s3://bucket/prefix
    s3_endpoint: str
    user: str
    max_upload_bytes: int
    max_pixels: int
    refresh_seconds: float
    batch_wait_ms: float
    batch_gap_ms: float
    max_batch: int
    workers: int
    force_cpu: bool
    signin_attempts: int
    lockout_minutes: float
    session_hours: float
    # The serving APIs whose /readyz the dashboard shows (comma-separated base URLs); () = none.
    api_urls: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("CHANNELHUB_HOME") or "var").resolve()
        artifacts = env.get("CHANNELHUB_ARTIFACTS")
        return cls(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{home / 'channelhub.db'}",
            home=home,
            artifacts=_artifact_location(artifacts, home),
            s3_endpoint=env.get("CHANNELHUB_S3_ENDPOINT") or "",
            user=env.get("CHANNELHUB_USER") or env.get("USER") or "operator",
            max_upload_bytes=_number(env, "CHANNELHUB_MAX_UPLOAD_BYTES", 10 * MiB),
            max_pixels=_number(env, "CHANNELHUB_MAX_PIXELS", 25_000_000),
            refresh_seconds=_number(env, "CHANNELHUB_REFRESH_SECONDS", 1.0, float),
            batch_wait_ms=_number(env, "CHANNELHUB_BATCH_WAIT_MS", 20.0, float),
            batch_gap_ms=_number(env, "CHANNELHUB_BATCH_GAP_MS", 1.5, float),
            max_batch=max(1, _number(env, "CHANNELHUB_MAX_BATCH", 32)),
            workers=_number(env, "CHANNELHUB_WORKERS", 0),  # 0: one per CPU core (capped)
            force_cpu=env.get("CHANNELHUB_FORCE_CPU") == "1",
            signin_attempts=max(1, _number(env, "CHANNELHUB_SIGNIN_ATTEMPTS", 5)),
            lockout_minutes=_number(env, "CHANNELHUB_LOCKOUT_MINUTES", 15.0, float),
            session_hours=_number(env, "CHANNELHUB_SESSION_HOURS", 12.0, float),
            api_urls=_url_list(env.get("CHANNELHUB_API_URL")),
        )


def settings() -> Settings:
    """The current settings (read each time: tests and `up` change the environment)."""
    return Settings.from_env()


def home_dir() -> Path:
    """Root of local state (`CHANNELHUB_HOME`, default `./var`)."""
    return settings().home


def database_url() -> str:
    """`DATABASE_URL`, or a SQLite file under the home folder."""
    return settings().database_url


def artifact_dir() -> Path:
    """The local folder of artifacts: `CHANNELHUB_ARTIFACTS` (default `artifacts/` under the home
    folder, shared by all machines); for an object-store URL, its local cache, where training
    writes before it publishes (db/artifact_store.py)."""
    from db.artifact_store import artifact_store

    return artifact_store().local_root


def current_user() -> str:
    """Who is acting on the command line: `CHANNELHUB_USER`, else the OS user."""
    return settings().user


def channel_key_variable(slug: str) -> str:
    """The variable that may hold channel `slug`'s API key for `channelhub simulate`."""
    return CHANNEL_KEY_PREFIX + slug.upper().replace("-", "_")


def channel_key_from_env(slug: str) -> str | None:
    return os.environ.get(channel_key_variable(slug)) or None


def resolve_artifact(path: str | Path) -> Path:
    """A stored artifact as a local file: relative ones are under the artifact folder (portable
    across machines sharing one store), absolute ones are taken as they are. On an object store a
    relative one is downloaded into the local cache first (a missing one gives a path that does
    not exist, as a missing local file does)."""
    from db.artifact_store import artifact_store

    store = artifact_store()
    try:
        return store.local_copy(path)
    except FileNotFoundError:
        return store.local_path(path)


def relative_artifact(path: str | Path) -> str:
    """The form stored in the registry: relative to the artifact folder when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(artifact_dir()))
    except ValueError:
        return str(path)
