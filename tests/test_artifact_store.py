"""The artifact store: a local folder exactly as before, and an fsspec URL (here fsspec's
in-memory filesystem; tests/test_artifact_store_s3.py runs the same calls against S3)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from db.artifact_store import ArtifactStore, ArtifactStoreError, artifact_store, cache_folder
from db.settings import Settings, artifact_dir, relative_artifact, resolve_artifact


@pytest.fixture
def memory_url() -> str:
    return f"memory://bucket-{uuid.uuid4().hex[:8]}/prefix"


def test_a_folder_store_writes_where_files_always_were(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    store.write_bytes("inputs/web/2024/a.png", b"png")
    assert (tmp_path / "artifacts/inputs/web/2024/a.png").read_bytes() == b"png"
    assert store.exists("inputs/web/2024/a.png") and not store.exists("inputs/nothing.png")
    assert store.local_copy("inputs/web/2024/a.png") == tmp_path / "artifacts/inputs/web/2024/a.png"
    assert store.read_bytes("inputs/web/2024/a.png") == b"png"
    store.delete("inputs/web/2024/a.png")
    store.delete("inputs/web/2024/a.png")  # missing is fine
    assert not store.exists("inputs/web/2024/a.png")
    with pytest.raises(FileNotFoundError):
        store.local_copy("inputs/web/2024/a.png")


def test_default_settings_keep_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_HOME", str(tmp_path))
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)
    store = artifact_store()
    assert not store.remote and store.local_root == tmp_path.resolve() / "artifacts"
    assert artifact_dir() == store.local_root
    assert resolve_artifact("models/m.keras") == store.local_root / "models/m.keras"
    assert resolve_artifact("/elsewhere/m.keras") == Path("/elsewhere/m.keras")


def test_a_url_is_kept_as_a_url_and_its_cache_is_under_home(tmp_path):
    s = Settings.from_env(
        {"CHANNELHUB_HOME": str(tmp_path), "CHANNELHUB_ARTIFACTS": "s3://models/team-a",
         "CHANNELHUB_S3_ENDPOINT": "http://127.0.0.1:9000"}
    )  # fmt: skip
    assert (s.artifacts, s.s3_endpoint) == ("s3://models/team-a", "http://127.0.0.1:9000")
    store = ArtifactStore(s.artifacts, cache=s.home / "artifact-cache")
    assert store.remote
    assert store.local_root == tmp_path.resolve() / "artifact-cache/s3/models/team-a"
    assert cache_folder("s3://b/../../etc") == "s3/b/etc"


def test_a_remote_store_round_trip_and_cached_copy(tmp_path, memory_url):
    store = ArtifactStore(memory_url, cache=tmp_path / "cache")
    store.write_bytes("models/m/job-1/model.keras", b"weights")
    assert store.exists("models/m/job-1/model.keras")
    assert not (store.local_root / "models/m/job-1/model.keras").exists()  # only in the store
    assert store.read_bytes("models/m/job-1/model.keras") == b"weights"
    copy = store.local_copy("models/m/job-1/model.keras")
    assert copy == store.local_root / "models/m/job-1/model.keras"
    assert copy.read_bytes() == b"weights"
    assert [p.name for p in copy.parent.iterdir()] == ["model.keras"]  # no partial file left
    store.forget("models/m/job-1/model.keras")
    assert not copy.exists() and store.exists("models/m/job-1/model.keras")
    store.delete("models/m/job-1/model.keras")
    assert not store.exists("models/m/job-1/model.keras")
    with pytest.raises(FileNotFoundError):
        store.local_copy("models/m/job-1/model.keras")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("models/m/job-1/model.keras")


def test_several_files_written_at_once(tmp_path, memory_url):
    for store in (ArtifactStore(tmp_path / "a"), ArtifactStore(memory_url, cache=tmp_path)):
        store.write_many({"inputs/1.png": b"one", "inputs/sub/2.png": b"two"})
        assert store.read_bytes("inputs/1.png") == b"one"
        assert store.read_bytes("inputs/sub/2.png") == b"two"
        store.write_many({})


def test_training_output_is_published_from_the_cache(tmp_path, memory_url):
    store = ArtifactStore(memory_url, cache=tmp_path / "cache")
    written = store.local_path("models/m/job-2/model.keras")
    written.parent.mkdir(parents=True)
    written.write_bytes(b"trained")
    assert not store.exists("models/m/job-2/model.keras")
    store.publish("models/m/job-2/model.keras")
    assert store.exists("models/m/job-2/model.keras")
    other_machine = ArtifactStore(memory_url, cache=tmp_path / "other-cache")
    assert other_machine.local_copy("models/m/job-2/model.keras").read_bytes() == b"trained"


def test_settings_route_reads_through_the_store(tmp_path, monkeypatch, memory_url):
    monkeypatch.setenv("CHANNELHUB_HOME", str(tmp_path))
    monkeypatch.setenv("CHANNELHUB_ARTIFACTS", memory_url)
    store = artifact_store()
    assert store.remote and artifact_dir() == store.local_root
    store.write_bytes("holdout/predictions.npz", b"scores")
    local = resolve_artifact("holdout/predictions.npz")  # downloaded for readers of files
    assert local.read_bytes() == b"scores"
    assert relative_artifact(local) == "holdout/predictions.npz"
    missing = resolve_artifact("holdout/none.npz")
    assert not missing.exists() and missing.parent == local.parent


def test_paths_that_climb_out_of_the_store_are_refused(tmp_path, memory_url):
    store = ArtifactStore(memory_url, cache=tmp_path / "cache")
    with pytest.raises(ValueError, match="not a relative artifact path"):
        store.write_bytes("../other-bucket/x", b"")


def test_an_unreachable_store_is_an_oserror_naming_it(tmp_path, monkeypatch):
    # Credentials given, so botocore never asks an instance-metadata address for some.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = ArtifactStore("s3://nowhere/x", cache=tmp_path / "cache", endpoint="http://127.0.0.1:9")
    store.fs.retries = 1
    with pytest.raises(ArtifactStoreError, match="cannot read inputs/a.png in s3://nowhere/x"):
        store.read_bytes("inputs/a.png")


def test_the_review_page_shows_inputs_from_the_store(tmp_path, monkeypatch, memory_url):
    import numpy as np

    from core.ml.images import encode_png
    from dashboard.review import IMAGE_PX, input_image

    monkeypatch.setenv("CHANNELHUB_HOME", str(tmp_path))
    monkeypatch.setenv("CHANNELHUB_ARTIFACTS", memory_url)
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    artifact_store().write_bytes("inputs/web/p.png", encode_png(pixels))
    shown = input_image("inputs/web/p.png")
    assert shown is not None and shown.shape == (IMAGE_PX, IMAGE_PX, 3)
    assert shown[0, 0, 0] == 0 and shown[-1, -1, 0] == 63
    assert input_image("inputs/web/missing.png") is None


class _StoreAwayOnDelete(ArtifactStore):
    def delete(self, relative_path):
        raise ArtifactStoreError(f"cannot delete {relative_path}: the store is away")


@pytest.mark.parametrize("store_fails_too", [False, True])
def test_inputs_of_a_refused_batch_are_removed_and_the_writer_goes_on(
    registry, tmp_path, memory_url, store_fails_too
):
    import numpy as np

    from core.serving.prediction_log import LogRefused, PredictionLog
    from db.models import utcnow
    from db.repo.predictions import PredictionRecord, new_prediction_id

    kind = _StoreAwayOnDelete if store_fails_too else ArtifactStore
    store = kind(memory_url, cache=tmp_path / "cache")
    read_only = f"sqlite:///file:{registry.removeprefix('sqlite:///')}?mode=ro&uri=true"
    log = PredictionLog(read_only, store)
    try:
        for n in range(2):  # the second write shows the writer outlived the first failure
            record = PredictionRecord(
                id=new_prediction_id(), channel_id=1, version_id=1, arm="production",
                predicted_class=1, confidence=0.9, probabilities=[0.1, 0.9], latency_ms=1.0,
                input_path=f"inputs/web/{n}.png", created_at=utcnow(),
            )  # fmt: skip
            future = log.submit(record, np.zeros((8, 8, 1), dtype=np.uint8))
            with pytest.raises(LogRefused, match="cannot write"):
                future.result(timeout=60)
            assert store.exists(record.input_path) is store_fails_too
    finally:
        log.close()
