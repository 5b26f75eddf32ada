"""Fixtures of the serving tests, loaded as a plugin: `pytest_plugins = [...serving_fixtures]`."""

from __future__ import annotations

import pytest

from core.ml.datasets import LabelledImages, load_dataset
from tests.serving_helpers import (
    TinyModel,
    build_registry,
    free_port,
    start_server,
    train_tiny_model,
)


@pytest.fixture(scope="session")
def digits() -> LabelledImages:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits) -> list[TinyModel]:
    """Two distinct versions of the same tiny model (v2 trained longer)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return [
        train_tiny_model(root / "v1" / "model.keras", digits, epochs=15, seed=1),
        train_tiny_model(root / "v2" / "model.keras", digits, epochs=30, seed=2),
    ]


@pytest.fixture(scope="module")
def serving_registry(tmp_path_factory, tiny_models, digits):
    """A fresh registry per test module, with DATABASE_URL and CHANNELHUB_HOME pointing at it."""
    root = tmp_path_factory.mktemp("serving")
    registry = build_registry(root, tiny_models, digits)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", registry.database_url)
        mp.setenv("CHANNELHUB_HOME", str(root))
        mp.setenv("CHANNELHUB_ARTIFACTS", str(root / "artifacts"))
        yield registry


@pytest.fixture(scope="module")
def server(serving_registry):
    """A real `channelhub serve` subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    proc = start_server(serving_registry, port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)
