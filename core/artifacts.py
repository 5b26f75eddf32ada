"""Model artifacts as the registry records them: found in the store and checked by sha256."""

from __future__ import annotations

from pathlib import Path

from core.ml.training import sha256_of_file
from db.artifact_store import artifact_store
from db.repo.models import VersionInfo


class ArtifactError(RuntimeError):
    """A version's artifact is missing or is not the file that was registered."""


def verified_artifact(version: VersionInfo) -> Path:
    """The path of `version`'s `.keras` file (a cached download from an object store), after
    checking it exists and matches its sha256."""
    store = artifact_store()
    try:
        path = store.local_copy(version.artifact_path)
    except FileNotFoundError:
        where = store.where(version.artifact_path)
        raise ArtifactError(f"artifact of {version.label} is missing: {where}") from None
    except OSError as exc:
        raise ArtifactError(f"artifact of {version.label} cannot be fetched: {exc}") from exc
    digest = sha256_of_file(path)
    if digest != version.artifact_sha256:
        store.forget(version.artifact_path)  # a bad download is fetched again next time
        raise ArtifactError(
            f"artifact of {version.label} fails its sha256 check ({digest[:12]}… is not the "
            f"registered {version.artifact_sha256[:12]}…)"
        )
    return path
