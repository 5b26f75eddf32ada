"""Artifacts on an object store: a local S3-compatible server (moto's server mode on 127.0.0.1)
holds the models a worker trains and the inputs the API stores; another "machine" (its own home,
so its own empty cache) loads the model from the bucket."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.datasets import register_builtin_dataset
from core.ml.datasets import load_dataset
from core.ml.images import encode_png
from core.serving.api import create_app
from core.serving.settings import ServingSettings
from core.training.jobs import enqueue_job
from db.artifact_store import ArtifactStore, artifact_store
from db.engine import session_scope
from db.repo import jobs, models
from db.repo.channels import ChannelSpec, create_channel, promote_version
from db.repo.jobs import JobRequest
from db.repo.predictions import get_prediction
from tests.serving_helpers import REPO_ROOT, free_port

BUCKET = "channelhub-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port with one bucket; the fake credentials are set
    in this process only (children inherit them), never on the machine."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "CHANNELHUB_S3_ENDPOINT": endpoint,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }.items():  # fmt: skip
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        _s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    server.stop()


def _s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _keys(endpoint: str, prefix: str) -> set[str]:
    listing = _s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def test_the_store_round_trip_on_s3(s3_endpoint, tmp_path):
    prefix = f"unit-{uuid.uuid4().hex[:8]}"
    store = ArtifactStore(f"s3://{BUCKET}/{prefix}", cache=tmp_path, endpoint=s3_endpoint)
    store.write_bytes("inputs/web/a.png", b"png")
    assert _keys(s3_endpoint, prefix) == {f"{prefix}/inputs/web/a.png"}
    assert store.exists("inputs/web/a.png") and not store.exists("inputs/web/b.png")
    assert store.read_bytes("inputs/web/a.png") == b"png"
    assert store.local_copy("inputs/web/a.png").read_bytes() == b"png"
    store.delete("inputs/web/a.png")
    assert _keys(s3_endpoint, prefix) == set()
    with pytest.raises(FileNotFoundError):
        store.read_bytes("inputs/web/a.png")


def _train_on_s3(worker_home: Path) -> int:
    """A one-epoch seed-cnn job run by a real worker process whose home (and cache) is its own."""
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        model = models.get_or_create_model(session=s, name="digits-classifier")
        job = enqueue_job(session=s, request=JobRequest(
            model_id=model.id, dataset_id=dataset.id, architecture="seed-cnn",
            hyperparameters={"epochs": 1, "augmentation": False, "batch_size": 128},
            requested_by="tester",
        ))  # fmt: skip
    env = {**os.environ, "CHANNELHUB_HOME": str(worker_home)}
    cmd = [sys.executable, "-m", "core.training.worker", "--poll-interval", "0.2",
           "--exit-when-idle"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    with session_scope() as s:
        info = jobs.get_job(session=s, job_id=job.id)
    assert info.status == "succeeded", done.stderr[-3000:]
    return info.result_version_id


@pytest.mark.slow
def test_a_version_trained_on_s3_is_served_from_s3(s3_endpoint, registry, tmp_path, monkeypatch):
    prefix = f"shared-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CHANNELHUB_ARTIFACTS", f"s3://{BUCKET}/{prefix}")
    version_id = _train_on_s3(tmp_path / "worker-machine")
    with session_scope() as s:
        version = models.get_version(session=s, version_id=version_id)
        _, key = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", dataset_id=version.dataset_id)
        )
        promote_version(session=s, slug="web", version_id=version_id)
    stored = _keys(s3_endpoint, prefix)
    assert f"{prefix}/{version.artifact_path}" in stored
    assert f"{prefix}/{version.test_predictions_path}" in stored

    store = artifact_store()  # this process's home: an empty cache, so the model is fetched
    cached = store.local_path(version.artifact_path)
    assert store.remote and not cached.exists()
    app = create_app(settings=ServingSettings(refresh_seconds=0.2))
    with TestClient(app) as client:
        state = client.app.state.services.cache.channel("web")
        assert state.production is not None and state.production.version_id == version_id
        assert cached.is_file()
        image = encode_png(load_dataset("digits").x[5])
        files = {"file": ("x.png", image, "image/png")}
        response = client.post("/v1/channels/web/predict", files=files, headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        prediction_id = response.json()["prediction_id"]
    with session_scope() as s:
        row = get_prediction(session=s, prediction_id=prediction_id)
    assert row.input_path and f"{prefix}/{row.input_path}" in _keys(s3_endpoint, prefix)
    assert store.read_bytes(row.input_path) == image
    assert not store.local_path(row.input_path).exists()  # inputs go to the bucket, not disk
