"""Model artifacts as the registry records them: found in the store and checked by sha256."""

from __future__ import annotations

from pathlib import Path

from core.ml.training import sha256_of_file
from db.repo.models import VersionInfo
from db.settings import resolve_artifact


class ArtifactError(RuntimeError):
    """A version's artifact is missing or is not the file that was registered."""


def verified_artifact(version: VersionInfo) -> Path:
    """The path of `version`'s `.keras` file, after checking it exists and matches its sha256."""
    path = resolve_artifact(version.artifact_path)
    if not path.is_file():
        raise ArtifactError(f"artifact of {version.label} is missing: {path}")
    digest = sha256_of_file(path)
    if digest != version.artifact_sha256:
        raise ArtifactError(
            f"artifact of {version.label} fails its sha256 check ({digest[:12]}… is not the "
            f"registered {version.artifact_sha256[:12]}…)"
        )
    return path
