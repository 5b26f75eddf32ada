"""Where the registry lives: database URL and artifact folder, from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """Root of local state (`CHANNELHUB_HOME`, default `./var`)."""
    return Path(os.environ.get("CHANNELHUB_HOME", "var")).resolve()


def database_url() -> str:
    """`DATABASE_URL`, or a SQLite file under the home folder."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home_dir() / 'channelhub.db'}"


def artifact_dir() -> Path:
    """`CHANNELHUB_ARTIFACTS`, or `artifacts/` under the home folder. Shared by all machines."""
    path = os.environ.get("CHANNELHUB_ARTIFACTS")
    return Path(path).resolve() if path else home_dir() / "artifacts"


def current_user() -> str:
    """Who is acting, for audit rows: `CHANNELHUB_USER`, else the OS user."""
    return os.environ.get("CHANNELHUB_USER") or os.environ.get("USER") or "operator"


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
