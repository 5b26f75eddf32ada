"""A small but realistic registry for dashboard tests, filled through the db.repo functions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from core.ml.datasets import load_dataset
from core.ml.images import encode_png
from core.ops.demo import channel_specs
from core.serving.prediction_log import rollup_deltas
from db.engine import dispose_engines, get_engine, session_scope
from db.models import utcnow
from db.repo import channels, datasets, feedback, jobs, models, predictions, workers
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.repo.rollups import add_to_rollups
from db.settings import artifact_dir

CLASS_NAMES = [str(i) for i in range(10)]


@dataclass
class FilledRegistry:
    url: str
    home: Path
    model_id: int = 0
    dataset_id: int = 0
    version_ids: list[int] = field(default_factory=list)
    channel_ids: dict[str, int] = field(default_factory=dict)
    feedback_ids: list[int] = field(default_factory=list)
    job_ids: dict[str, int] = field(default_factory=dict)


def fake_evaluation(y_true: np.ndarray, y_pred: np.ndarray, loss: float) -> dict:
    """The evaluation dict `core.ml.evaluation` produces, computed with numpy only."""
    k = len(CLASS_NAMES)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    per_class = []
    for i, name in enumerate(CLASS_NAMES):
        tp, support, predicted = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class.append(
            {
                "class": i,
                "name": name,
                "precision": float(p),
                "recall": float(r),
                "f1": float(f1),
                "support": int(support),
            }
        )
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "loss": loss,
        "precision_macro": float(np.mean([c["precision"] for c in per_class])),
        "recall_macro": float(np.mean([c["recall"] for c in per_class])),
        "f1_macro": float(np.mean([c["f1"] for c in per_class])),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "num_test": int(len(y_true)),
    }


def fake_history(epochs: int, final_accuracy: float) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        acc = final_accuracy * (1 - 0.6 * np.exp(-e / 2))
        rows.append(
            {
                "epoch": e,
                "loss": float(2.3 * np.exp(-e / 2) + 0.05),
                "accuracy": float(min(acc + 0.01, 1.0)),
                "val_loss": float(2.3 * np.exp(-e / 2.2) + 0.08),
                "val_accuracy": float(acc),
            }
        )
    return rows


def _register_version(session, reg, data, rng, *, architecture, accuracy, parent, items=()):
    test_idx = np.sort(rng.choice(len(data.y), size=360, replace=False))
    y_true = data.y[test_idx]
    wrong = rng.random(len(y_true)) > accuracy
    y_pred = np.where(wrong, (y_true + rng.integers(1, 10, len(y_true))) % 10, y_true)
    probs = rng.dirichlet(np.ones(10) * 0.3, len(y_true)) * 0.3
    probs[np.arange(len(y_true)), y_pred] += 0.7
    folder = artifact_dir() / "models" / f"{architecture}-{len(reg.version_ids) + 1}"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / "test_predictions.npz",
        indices=test_idx,
        y_true=y_true,
        y_pred=y_pred,
        probs=probs.astype(np.float16),
    )
    hp = {
        "epochs": 8,
        "batch_size": 64,
        "learning_rate": 0.001,
        "optimizer": "adam",
        "augmentation": True,
        "seed": 0,
        "early_stopping_patience": 5,
    }
    info = models.register_version(
        session=session,
        model_id=reg.model_id,
        architecture=architecture,
        artifact_path=str(folder / "model.keras"),
        artifact_sha256="ab" * 32,
        hyperparameters=hp,
        dataset_id=reg.dataset_id,
        dataset_fingerprint=data.fingerprint,
        evaluation=fake_evaluation(y_true, y_pred, 0.3 - accuracy / 5),
        history=fake_history(8, accuracy),
        framework_versions={"keras": "3", "tensorflow": "2"},
        device="cpu",
        train_seconds=42.0,
        parent_version_id=parent,
        test_predictions_path=str(folder / "test_predictions.npz"),
        training_items=list(items),
        actor="alice",
        holdout_fingerprint=HOLDOUT,
    )
    reg.version_ids.append(info.id)
    return info


def _add_channels(session, reg: FilledRegistry) -> None:
    v1, v2 = reg.version_ids[:2]
    table = [
        ("web", "Web app", "web", 0.9, 250.0),
        ("mobile", "Mobile app", "mobile", 0.9, 400.0),
        ("partner-api", "Partner API", "api", 0.99, 100.0),
    ]
    for slug, spec in channel_specs(reg.dataset_id, reg.model_id, table).items():
        info, _key = channels.create_channel(session=session, slug=slug, spec=spec)
        reg.channel_ids[slug] = info.id
        channels.promote_version(
            session=session, slug=slug, version_id=v2 if slug != "partner-api" else v1
        )
    channels.set_candidate(session=session, slug="web", version_id=v1, traffic=0.1)


def _add_traffic(session, reg, data, rng, n_predictions: int) -> list[str]:
    inputs = artifact_dir() / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    now, records = utcnow(), []
    slugs = list(reg.channel_ids)
    for i in range(n_predictions):
        idx = int(rng.integers(len(data.y)))
        slug = slugs[i % len(slugs)]
        version = reg.version_ids[0] if slug == "partner-api" else reg.version_ids[1]
        probs = rng.dirichlet(np.ones(10) * 0.3)
        pred = int(data.y[idx]) if rng.random() < 0.85 else int(probs.argmax())
        probs = 0.5 * probs
        probs[pred] += 0.5
        pid = predictions.new_prediction_id()
        (inputs / f"{pid}.png").write_bytes(encode_png(data.x[idx]))
        records.append(
            predictions.PredictionRecord(
                pid,
                reg.channel_ids[slug],
                version,
                "production",
                pred,
                float(probs.max()),
                [float(p) for p in probs],
                float(rng.gamma(4.0, 30.0)),
                f"inputs/{pid}.png",
                now - timedelta(minutes=int(rng.integers(1, 36 * 60))),
            )
        )
    predictions.insert_predictions(session=session, records=records)
    add_to_rollups(session=session, deltas=rollup_deltas([(r, None) for r in records]))
    return [r.id for r in records]


def _add_feedback(session, reg, rng, prediction_ids: list[str]) -> None:
    for pid in prediction_ids[::4]:
        record = predictions.get_prediction(session=session, prediction_id=pid)
        rating = "up" if rng.random() < 0.6 else "down"
        claimed = None if rating == "up" else int((record.predicted_class + 1) % 10)
        info = feedback.add_feedback(
            session=session,
            feedback=FeedbackInput(
                prediction_id=pid,
                channel_id=record.channel_id,
                rating=rating,
                claimed_class=claimed,
                comment="looks wrong" if rating == "down" else "",
                num_classes=10,
            ),
        )
        reg.feedback_ids.append(info.id)


def _add_jobs(session, reg: FilledRegistry) -> None:
    worker = workers.register_worker(session=session, host="trainer-1", pid=4242, gpus=[])
    hp = {
        "epochs": 3,
        "batch_size": 32,
        "learning_rate": 0.001,
        "optimizer": "adam",
        "augmentation": False,
        "seed": 0,
        "early_stopping_patience": 2,
    }
    for name in ("done", "broken"):
        job = jobs.insert_job(
            session=session,
            request=jobs.JobRequest(
                model_id=reg.model_id,
                dataset_id=reg.dataset_id,
                architecture="resnet-small",
                hyperparameters=hp,
                base_version_id=reg.version_ids[1],
                channel_id=reg.channel_ids["web"],
                requested_by="alice",
                note=f"{name} job",
            ),
        )
        jobs.claim_next_job(session=session, worker_id=worker.id, gpus=[])
        for epoch in (1, 2):
            jobs.record_epoch(
                session=session,
                job_id=job.id,
                worker_id=worker.id,
                epoch=epoch,
                total=3,
                metrics={
                    "loss": 1.0 / epoch,
                    "accuracy": 0.5 + epoch / 10,
                    "val_loss": 1.1 / epoch,
                    "val_accuracy": 0.5,
                },
            )
        jobs.append_log(session=session, job_id=job.id, message="epoch 2/3 done")
        reg.job_ids[name] = job.id
    jobs.finish_job(
        session=session,
        job_id=reg.job_ids["done"],
        worker_id=worker.id,
        status="succeeded",
        result_version_id=reg.version_ids[-1],
    )
    jobs.finish_job(
        session=session,
        job_id=reg.job_ids["broken"],
        worker_id=worker.id,
        status="failed",
        error="out of memory while loading batch 3",
    )


HOLDOUT = "e" * 64  # every fixture version is scored on one holdout, so they compare


def fill_registry(home: Path, *, n_predictions: int = 300, seed: int = 0) -> FilledRegistry:
    """Fill the registry that DATABASE_URL names (already pointed at `home`)."""
    rng = np.random.default_rng(seed)
    data = load_dataset("digits")
    reg = FilledRegistry(url="", home=home)
    with session_scope() as s:
        ds = datasets.register_dataset(
            session=s,
            record=datasets.DatasetRecord(
                name="digits",
                source="digits",
                location=None,
                class_names=CLASS_NAMES,
                input_shape=list(data.input_shape),
                num_samples=data.num_samples,
                fingerprint=data.fingerprint,
            ),
        )
        reg.dataset_id = ds.id
        reg.model_id = models.create_model(session=s, name="digits").id
        v1 = _register_version(
            s, reg, data, rng, architecture="seed-cnn", accuracy=0.93, parent=None
        )
        _register_version(
            s, reg, data, rng, architecture="resnet-small", accuracy=0.97, parent=v1.id
        )
        _add_channels(s, reg)
        _add_feedback(s, reg, rng, _add_traffic(s, reg, data, rng, n_predictions))
    with session_scope() as s:
        for fid in reg.feedback_ids[:4]:
            feedback.annotate(
                session=s,
                feedback_id=fid,
                author="bob",
                annotation=AnnotationInput(
                    verdict="corrected", true_class=3, tags=["blurry"], num_classes=10
                ),
            )
        used = feedback.training_items(session=s, model_id=reg.model_id)[:2]
        v3 = _register_version(
            s,
            reg,
            data,
            rng,
            architecture="resnet-small",
            accuracy=0.975,
            parent=reg.version_ids[1],
            items=[(t.feedback_id, t.annotation_id, t.true_class) for t in used],
        )
        feedback.mark_used(session=s, feedback_ids=[t.feedback_id for t in used], version_id=v3.id)
        _add_jobs(s, reg)
    return reg


@pytest.fixture(name="filled_registry")
def filled_registry_fixture(registry: str) -> Iterator[FilledRegistry]:
    """The conftest's empty SQLite registry, filled with digits versions, channels and traffic."""
    import os

    reg = fill_registry(Path(os.environ["CHANNELHUB_HOME"]))
    reg.url = registry
    yield reg
    dispose_engines()


def make_registry(home: Path) -> str:
    """Point this process at a fresh registry under `home` (for scripts); returns its URL."""
    import os

    url = f"sqlite:///{home / 'channelhub.db'}"
    os.environ["CHANNELHUB_HOME"] = str(home)
    os.environ["DATABASE_URL"] = url
    dispose_engines()
    get_engine(url)
    return url


def store_test_predictions(version_id: int, indices, y_true, y_pred) -> None:
    """Overwrite a version's stored test predictions with known ones (the compare view's input)."""
    from db.repo.models import get_version
    from db.settings import resolve_artifact

    with session_scope() as s:
        path = resolve_artifact(get_version(session=s, version_id=version_id).test_predictions_path)
    y_pred = np.asarray(y_pred)
    probs = np.eye(len(CLASS_NAMES), dtype=np.float16)[y_pred]
    np.savez_compressed(
        path, indices=np.asarray(indices), y_true=np.asarray(y_true), y_pred=y_pred, probs=probs
    )
