"""Every environment variable ChannelHub reads, in one settings object.

`Settings.from_env()` reads them all at once; `VARIABLES` names each (the README's
configuration table is checked against it). The helpers below are the common reads.
"""

from __future__ import annotations

import os
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
    "CHANNELHUB_USER": "user",
    "CHANNELHUB_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "CHANNELHUB_MAX_PIXELS": "max_pixels",
    "CHANNELHUB_REFRESH_SECONDS": "refresh_seconds",
    "CHANNELHUB_BATCH_WAIT_MS": "batch_wait_ms",
    "CHANNELHUB_MAX_BATCH": "max_batch",
    "CHANNELHUB_WORKERS": "workers",
    "CHANNELHUB_FORCE_CPU": "force_cpu",
    "CHANNELHUB_SIGNIN_ATTEMPTS": "signin_attempts",
    "CHANNELHUB_LOCKOUT_MINUTES": "lockout_minutes",
    "CHANNELHUB_SESSION_HOURS": "session_hours",
}

# The simulator's key for channel SLUG: CHANNELHUB_API_KEY_SLUG (dashes as underscores).
CHANNEL_KEY_PREFIX = "CHANNELHUB_API_KEY_"

# Read by libraries, not by us; documented beside ours.
LIBRARY_VARIABLES = ("KERAS_BACKEND",)


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


@dataclass(frozen=True)
class Settings:
    """The values of `VARIABLES` (defaults applied, paths resolved)."""

    database_url: str
    home: Path
    artifacts: Path
    user: str
    max_upload_bytes: int
    max_pixels: int
    refresh_seconds: float
    batch_wait_ms: float
    max_batch: int
    workers: int
    force_cpu: bool
    signin_attempts: int
    lockout_minutes: float
    session_hours: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("CHANNELHUB_HOME") or "var").resolve()
        artifacts = env.get("CHANNELHUB_ARTIFACTS")
        return cls(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{home / 'channelhub.db'}",
            home=home,
            artifacts=Path(artifacts).resolve() if artifacts else home / "artifacts",
            user=env.get("CHANNELHUB_USER") or env.get("USER") or "operator",
            max_upload_bytes=_number(env, "CHANNELHUB_MAX_UPLOAD_BYTES", 10 * MiB),
            max_pixels=_number(env, "CHANNELHUB_MAX_PIXELS", 25_000_000),
            refresh_seconds=_number(env, "CHANNELHUB_REFRESH_SECONDS", 1.0, float),
            batch_wait_ms=_number(env, "CHANNELHUB_BATCH_WAIT_MS", 0.0, float),
            max_batch=max(1, _number(env, "CHANNELHUB_MAX_BATCH", 32)),
            workers=_number(env, "CHANNELHUB_WORKERS", 0),  # 0: one per CPU core (capped)
            force_cpu=env.get("CHANNELHUB_FORCE_CPU") == "1",
            signin_attempts=max(1, _number(env, "CHANNELHUB_SIGNIN_ATTEMPTS", 5)),
            lockout_minutes=_number(env, "CHANNELHUB_LOCKOUT_MINUTES", 15.0, float),
            session_hours=_number(env, "CHANNELHUB_SESSION_HOURS", 12.0, float),
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
    """`CHANNELHUB_ARTIFACTS`, or `artifacts/` under the home folder. Shared by all machines."""
    return settings().artifacts


def current_user() -> str:
    """Who is acting on the command line: `CHANNELHUB_USER`, else the OS user."""
    return settings().user


def channel_key_variable(slug: str) -> str:
    """The variable that may hold channel `slug`'s API key for `channelhub simulate`."""
    return CHANNEL_KEY_PREFIX + slug.upper().replace("-", "_")


def channel_key_from_env(slug: str) -> str | None:
    return os.environ.get(channel_key_variable(slug)) or None


def resolve_artifact(path: str | Path) -> Path:
    """A stored artifact path: relative ones are under the artifact folder (portable across
    machines sharing one store), absolute ones are taken as they are."""
    path = Path(path)
    return path if path.is_absolute() else artifact_dir() / path


def relative_artifact(path: str | Path) -> str:
    """The form stored in the registry: relative to the artifact folder when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(artifact_dir()))
    except ValueError:
        return str(path)
