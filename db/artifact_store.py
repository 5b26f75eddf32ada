"""Where artifacts live: a local folder (the default) or an object store (`s3://bucket/prefix`,
through fsspec), behind one small interface of paths relative to the store's root.

Artifacts are written once and never changed (a model per job, an input per prediction id), so
a download is cached on the local disk by its relative path: Keras needs a file to load a model,
and a model is checked against its registered sha256 after it is fetched anyway. Absolute paths
(files registered from outside the store) are always local files.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from db.settings import is_store_url, settings


def _write_file(path: Path, data: bytes) -> None:
    """`path.write_bytes(data)` without the buffered-file layers (a fifth of the cost of the
    small files the prediction log writes a thousand times a second)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class ArtifactStoreError(OSError):
    """The object store could not be reached or refused a request (an OSError, like a disk's)."""


class ArtifactStore:
    """Relative paths read and written under `location`: a folder, or an fsspec URL whose
    downloads are cached under `cache`."""

    def __init__(self, location: str | Path, *, cache: Path | None = None, endpoint: str = ""):
        self.location = str(location).rstrip("/")
        self.remote = is_store_url(self.location)
        self.endpoint = endpoint
        if self.remote:
            self.local_root = Path(cache or tempfile.gettempdir()) / cache_folder(self.location)
        else:
            self.local_root = Path(location)
        self._fs: Any = None
        self._dirs: set[Path] = set()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.location!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of a remote store (created on first use)."""
        if self._fs is None:
            from fsspec.core import url_to_fs

            options: dict[str, Any] = {}
            if self.endpoint and self.location.startswith(("s3://", "s3a://")):
                options["client_kwargs"] = {"endpoint_url": self.endpoint}
            self._fs, self._root = url_to_fs(self.location, **options)
        return self._fs

    def local_path(self, relative_path: str | Path) -> Path:
        """Where the file is (a local store) or is cached (a remote one); no download."""
        path = Path(relative_path)
        return path if path.is_absolute() else self.local_root / path

    def write_bytes(self, relative_path: str | Path, data: bytes) -> None:
        if self.is_local(relative_path):
            path = self.local_path(relative_path)
            if path.parent not in self._dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(path.parent)
            _write_file(path, data)
            return
        self._call("write", relative_path, self.fs.pipe_file, self._key(relative_path), data)

    def write_many(self, files: dict[str, bytes]) -> None:
        """Write several files (an object store takes them in parallel, not one by one)."""
        remote = {path: data for path, data in files.items() if not self.is_local(path)}
        for path, data in files.items():
            if path not in remote:
                self.write_bytes(path, data)
        if remote:
            keys = {self._key(path): data for path, data in remote.items()}
            self._call("write", f"{len(keys)} files", self.fs.pipe, keys)

    def read_bytes(self, relative_path: str | Path) -> bytes:
        cached = self.local_path(relative_path)
        if self.is_local(relative_path) or cached.is_file():
            return cached.read_bytes()
        return self._call("read", relative_path, self.fs.cat_file, self._key(relative_path))

    def exists(self, relative_path: str | Path) -> bool:
        if self.is_local(relative_path):
            return self.local_path(relative_path).is_file()
        return self._call("look up", relative_path, self.fs.isfile, self._key(relative_path))

    def delete(self, relative_path: str | Path) -> None:
        """Remove a file; a missing one is not an error."""
        if self.is_local(relative_path):
            self.local_path(relative_path).unlink(missing_ok=True)
            return
        self.local_path(relative_path).unlink(missing_ok=True)
        try:
            self._call("delete", relative_path, self.fs.rm_file, self._key(relative_path))
        except FileNotFoundError:
            pass

    def local_copy(self, relative_path: str | Path) -> Path:
        """A local file holding the artifact: itself in a local store, else a cached download
        (written to a temporary name and renamed, so no reader sees half a file).
        FileNotFoundError when the store has no such file."""
        path = self.local_path(relative_path)
        if self.is_local(relative_path) or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"no artifact at {path}")
            return path
        data = self.read_bytes(relative_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(partial, path)
        return path

    def publish(self, relative_path: str | Path) -> None:
        """Upload a file written at `local_path(relative_path)` to a remote store (training
        writes its files locally first); nothing to do for a local store."""
        if not self.is_local(relative_path):
            self.write_bytes(relative_path, self.local_path(relative_path).read_bytes())

    def where(self, relative_path: str | Path) -> str:
        """The file's place, for messages: a local path or the store URL."""
        if self.is_local(relative_path):
            return str(self.local_path(relative_path))
        return f"{self.location}/{relative_path}"

    def forget(self, relative_path: str | Path) -> None:
        """Drop a cached download (never a file of a local store)."""
        if not self.is_local(relative_path):
            self.local_path(relative_path).unlink(missing_ok=True)

    def is_local(self, relative_path: str | Path) -> bool:
        """Whether the file lives on this machine's disk (a local store, or an absolute path)."""
        return not self.remote or Path(relative_path).is_absolute()

    def _key(self, relative_path: str | Path) -> str:
        parts = PurePosixPath(str(relative_path).replace("\\", "/")).parts
        if not parts or ".." in parts:
            raise ValueError(f"not a relative artifact path: {relative_path!r}")
        self.fs  # noqa: B018 - sets self._root
        return "/".join((self._root.rstrip("/"), *parts))

    def _call(self, verb: str, relative_path: str | Path, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError:  # FileNotFoundError, PermissionError: already what callers catch
            raise
        except Exception as exc:  # botocore's and aiohttp's errors are not OSErrors
            raise ArtifactStoreError(
                f"cannot {verb} {relative_path} in {self.location}: {type(exc).__name__}: {exc}"
            ) from exc


def cache_folder(url: str) -> str:
    """A folder name per store URL, so two stores never share cached files."""
    name = re.sub(r"[^A-Za-z0-9._/-]", "_", url.replace("://", "/", 1))
    return "/".join(part for part in name.split("/") if part not in ("", ".", ".."))


_stores: dict[tuple[str, str, str], ArtifactStore] = {}
_lock = threading.Lock()


def artifact_store() -> ArtifactStore:
    """The store `CHANNELHUB_ARTIFACTS` names (one per configuration in a process)."""
    s = settings()
    key = (str(s.artifacts), str(s.home), s.s3_endpoint)
    with _lock:
        if key not in _stores:
            _stores[key] = ArtifactStore(
                s.artifacts, cache=s.home / "artifact-cache", endpoint=s.s3_endpoint
            )
        return _stores[key]


def as_store(location: ArtifactStore | str | Path) -> ArtifactStore:
    """A store given as itself, a folder or a URL (tests pass a folder)."""
    return location if isinstance(location, ArtifactStore) else ArtifactStore(location)
