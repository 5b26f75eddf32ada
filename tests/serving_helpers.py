"""Helpers of the serving tests: tiny digit models, a registry serving them, a live server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import func, select

from core.datasets import register_loaded_dataset
from core.ml.datasets import LabelledImages
from core.ml.images import encode_png
from core.ml.training import sha256_of_file
from db.engine import session_scope
from db.models import Feedback, Prediction
from db.repo.channels import ChannelSpec, create_channel, promote_version
from db.repo.models import create_model, register_version

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TinyModel:
    path: Path
    sha256: str
    accuracy: float


@dataclass(frozen=True)
class ServingRegistry:
    """A registry with channel `web` and `mobile` serving v1, and `empty` serving nothing."""

    database_url: str
    home: Path
    keys: dict[str, str]
    version_ids: list[int]
    digits: LabelledImages

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "CHANNELHUB_HOME": str(self.home),
                "CHANNELHUB_ARTIFACTS": str(self.home / "artifacts")}  # fmt: skip


def train_tiny_model(path: Path, digits: LabelledImages, *, epochs: int, seed: int) -> TinyModel:
    """Rescaling + Flatten + Dense softmax on raw 8x8 digits: trains in a second or two."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=digits.input_shape),
            keras.layers.Rescaling(1.0 / 255.0),
            keras.layers.Flatten(),
            keras.layers.Dense(digits.num_classes, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(digits.x, digits.y, epochs=epochs, batch_size=64, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return TinyModel(path, sha256_of_file(path), float(history.history["accuracy"][-1]))


def build_registry(
    root: Path, models: list[TinyModel], digits: LabelledImages, url: str | None = None
) -> ServingRegistry:
    """Dataset, model with one version per artifact, channels web/mobile (v1) and empty; in a
    SQLite file under `root` unless `url` names another (empty, migrated) database."""
    url = url or f"sqlite:///{root / 'channelhub.db'}"
    with session_scope(url) as s:
        dataset = register_loaded_dataset(
            session=s, name="digits", source="digits", location=None, data=digits
        )
        model = create_model(session=s, name="digits-mlp")
        versions = [
            register_version(
                session=s, model_id=model.id, architecture="tiny-mlp",
                artifact_path=str(m.path), artifact_sha256=m.sha256, hyperparameters={},
                dataset_id=dataset.id, dataset_fingerprint=digits.fingerprint,
                evaluation={"accuracy": m.accuracy}, history=[], framework_versions={},
                device="cpu", train_seconds=1.0,
            ).id
            for m in models
        ]  # fmt: skip
        keys = {}
        for slug in ("web", "mobile", "empty"):
            _, keys[slug] = create_channel(
                session=s,
                slug=slug,
                spec=ChannelSpec(name=slug.title(), dataset_id=dataset.id, model_id=model.id),
            )
        for slug in ("web", "mobile"):
            promote_version(session=s, slug=slug, version_id=versions[0])
    return ServingRegistry(url, root, keys, versions, digits)


def png_of(digits: LabelledImages, index: int = 0) -> bytes:
    return encode_png(digits.x[index])


def count_rows(database_url: str, table=Prediction) -> int:
    with session_scope(database_url) as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def count_feedback(database_url: str) -> int:
    return count_rows(database_url, Feedback)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    registry: ServingRegistry, port: int, *extra: str, workers: int = 1
) -> subprocess.Popen:
    """`python -m core.serving.api` on a loopback port; returns once /readyz answers 200.
    Its output goes to `server-<port>.log` in the registry's folder."""
    cmd = [sys.executable, "-m", "core.serving.api", "--port", str(port), "--log-level",
           "warning", "--workers", str(workers), *extra]  # fmt: skip
    env = {**registry.env(), "CHANNELHUB_REFRESH_SECONDS": "0.5"}
    log_path = registry.home / f"server-{port}.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file)
    deadline = time.monotonic() + 180  # TensorFlow's import, per worker, on a busy machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready in 180 s")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Whether `predicate()` turned true within `timeout` seconds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def sample_pixels(digits: LabelledImages, index: int = 0) -> list:
    return np.asarray(digits.x[index, :, :, 0], dtype=int).tolist()


def predict(client: httpx.Client, base: str, key: str, image: bytes) -> httpx.Response:
    return client.post(
        f"{base}/v1/channels/web/predict",
        files={"file": ("digit.png", image, "image/png")},
        headers={"X-API-Key": key},
    )


class Hammer:
    """Client threads sending predictions until stopped; records every answer and failure."""

    def __init__(self, base: str, key: str, image: bytes, threads: int = 4) -> None:
        self.base, self.key, self.image = base, key, image
        self.answers: list[tuple[float, dict]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = predict(client, self.base, self.key, self.image)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(type(exc).__name__)
                    continue
                with self.lock:
                    if response.status_code == 200:
                        self.answers.append((time.monotonic(), response.json()))
                    else:
                        self.failures.append(f"{response.status_code} {response.text}")
