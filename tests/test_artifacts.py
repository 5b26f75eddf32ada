"""Artifacts are served and fine-tuned from only when they are the registered files."""

from __future__ import annotations

import hashlib

import pytest

from core.artifacts import ArtifactError, verified_artifact
from core.datasets import register_builtin_dataset
from core.serving.model_cache import ModelCache
from core.training.jobs import enqueue_job
from db.engine import session_scope
from db.repo import channels, jobs, models
from db.repo.channels import ChannelSpec
from db.repo.jobs import JobRequest
from db.settings import artifact_dir
from tests.registry_helpers import EVALUATION


def _version_with_file(content: bytes, registered_sha: str):
    path = artifact_dir() / "models" / "m" / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        model = models.get_or_create_model(session=s, name="m")
        version = models.register_version(
            session=s, model_id=model.id, architecture="seed-cnn",
            artifact_path="models/m/model.keras", artifact_sha256=registered_sha,
            hyperparameters={}, dataset_id=dataset.id,
            dataset_fingerprint=dataset.fingerprint, evaluation=EVALUATION, history=[],
            framework_versions={}, device="cpu", train_seconds=1.0,
        )  # fmt: skip
    return version, path


def test_the_registered_file_is_found_relative_to_the_artifact_store(registry):
    version, path = _version_with_file(b"weights", hashlib.sha256(b"weights").hexdigest())
    assert verified_artifact(version) == path


def test_a_missing_or_tampered_artifact_is_refused(registry):
    version, path = _version_with_file(b"weights", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ArtifactError, match="m v1 fails its sha256 check"):
        verified_artifact(version)
    path.unlink()
    with pytest.raises(ArtifactError, match="m v1 is missing"):
        verified_artifact(version)


def test_the_api_cache_does_not_serve_a_tampered_version(registry):
    version, _ = _version_with_file(b"weights", hashlib.sha256(b"other").hexdigest())
    with session_scope() as s:
        channels.create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", model_id=version.model_id)
        )
        channels.promote_version(session=s, slug="web", version_id=version.id)
    cache = ModelCache(registry)
    cache.refresh()
    try:
        state = cache.channel("web")
        assert state.production is None and "sha256" in state.load_error
        ready, report = cache.readiness()
        assert not ready and "sha256" in report["web"]["error"]
    finally:
        cache.close()


def test_fine_tuning_from_a_tampered_base_fails_the_job_with_the_reason(registry):
    from core.training.worker import TrainingWorker, WorkerOptions

    version, _ = _version_with_file(b"weights", hashlib.sha256(b"other").hexdigest())
    with session_scope() as s:
        job = enqueue_job(session=s, request=JobRequest(
            model_id=version.model_id, dataset_id=version.dataset_id,
            architecture="seed-cnn", hyperparameters={"epochs": 1}, base_version_id=version.id,
            requested_by="tester",
        ))  # fmt: skip
    TrainingWorker(WorkerOptions(exit_when_idle=True)).run()
    with session_scope() as s:
        failed = jobs.get_job(session=s, job_id=job.id)
        assert models.list_versions(session=s) == [
            models.get_version(session=s, version_id=version.id)
        ]
    assert failed.status == "failed"
    assert failed.error.startswith("cannot fine-tune: artifact of m v1 fails its sha256 check")
