"""The small tables of the dashboard-scale registry: a dataset, models, versions with their
evaluations and histories, channels (two with a candidate arm) and a job history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, insert

from db.models import Channel, Dataset, Model, ModelVersion, TrainingJob

N_VERSIONS, N_MODELS, N_JOBS, DAYS = 1_000, 5, 2_000, 30
HOLDOUT = "h" * 64  # every version scored on the dataset's one holdout, so they compare
HYPERPARAMETERS = {"epochs": 20, "batch_size": 64, "learning_rate": 1e-3, "optimizer": "adam",
                   "augmentation": True, "seed": 0, "early_stopping_patience": 5}  # fmt: skip


@dataclass(frozen=True)
class ChannelSpec:
    slug: str
    production_version: int
    candidate_version: int | None
    candidate_share: float


def channel_specs(n_versions: int) -> tuple[ChannelSpec, ...]:
    """Channel c serves model c + 1: its next-to-newest version, and on the first two channels
    the newest as a candidate (version id i belongs to model (i - 1) % N_MODELS + 1)."""
    slugs = ("web", "mobile", "partner-api", "kiosk", "batch-scoring")
    newest = [n_versions - N_MODELS + 1 + c for c in range(N_MODELS)]
    shares = (0.25, 0.1, 0.0, 0.0, 0.0)
    return tuple(
        ChannelSpec(slug, newest[c] - N_MODELS, newest[c] if shares[c] else None, shares[c])
        for c, slug in enumerate(slugs)
    )


CHANNELS = channel_specs(N_VERSIONS)


def _evaluation(rng: np.random.Generator, accuracy: float) -> dict:
    per_class = [
        {"class": i, "name": str(i), "precision": float(rng.uniform(accuracy - 0.05, 1)),
         "recall": float(rng.uniform(accuracy - 0.05, 1)), "f1": float(accuracy), "support": 36}
        for i in range(10)
    ]  # fmt: skip
    matrix = (np.eye(10) * 33 + rng.integers(0, 2, (10, 10))).astype(int).tolist()
    return {
        "accuracy": accuracy, "loss": 1 - accuracy, "precision_macro": accuracy,
        "recall_macro": accuracy, "f1_macro": accuracy, "per_class": per_class,
        "confusion_matrix": matrix, "num_test": 360,
    }  # fmt: skip


def _history(epochs: int, accuracy: float) -> list[dict]:
    return [
        {"epoch": e, "loss": 2 / e, "accuracy": accuracy * (1 - 0.5 / e), "val_loss": 2.1 / e,
         "val_accuracy": accuracy * (1 - 0.55 / e)}
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def _version_row(i: int, rng: np.random.Generator, now: datetime) -> dict:
    """Version `i` (1-based) of model (i-1) % N_MODELS + 1; unset columns take their defaults."""
    acc = float(rng.uniform(0.85, 0.99))
    return {
        "id": i, "model_id": (i - 1) % N_MODELS + 1, "version": (i - 1) // N_MODELS + 1,
        "architecture": ("seed-cnn", "resnet-small")[i % 2], "artifact_path": f"m/{i}.keras",
        "artifact_sha256": "0" * 64, "hyperparameters": HYPERPARAMETERS, "dataset_id": 1,
        "dataset_fingerprint": "f" * 64, "holdout_fingerprint": HOLDOUT,
        "parent_version_id": i - N_MODELS if i > N_MODELS else None,
        "history": _history(20, acc), "evaluation": _evaluation(rng, acc), "accuracy": acc,
        "f1_macro": acc, "created_by": "bench", "created_at": now - timedelta(hours=N_VERSIONS - i),
    }  # fmt: skip


def fill_base(conn: Connection, rng: np.random.Generator, now: datetime) -> None:
    """Dataset, models, versions, and the channels of CHANNELS."""
    conn.execute(insert(Dataset), [{
        "id": 1, "name": "digits", "source": "digits", "location": None,
        "class_names": [str(i) for i in range(10)], "input_shape": [8, 8, 1],
        "num_samples": 1797, "fingerprint": "f" * 64, "holdout_fingerprint": HOLDOUT,
        "holdout_summary": {"origin": "split", "seed": 0, "num_samples": 1797, "num_val": 180,
                            "num_test": 360},
    }])  # fmt: skip
    conn.execute(insert(Model), [{"id": m, "name": f"model-{m}"} for m in range(1, N_MODELS + 1)])
    versions = [_version_row(i, rng, now) for i in range(1, N_VERSIONS + 1)]
    conn.execute(insert(ModelVersion), versions)
    conn.execute(insert(Channel), [{
        "id": c + 1, "slug": spec.slug, "name": spec.slug.title(), "kind": "web",
        "dataset_id": 1, "model_id": c + 1, "production_version_id": spec.production_version,
        "candidate_version_id": spec.candidate_version, "candidate_traffic": spec.candidate_share,
        "slo_min_accuracy": 0.9, "slo_max_p95_ms": 250.0,
    } for c, spec in enumerate(CHANNELS)])  # fmt: skip


def fill_jobs(conn: Connection, rng: np.random.Generator, now: datetime) -> None:
    """Job history: mostly succeeded, some failed, cancelled, or still queued."""
    statuses = rng.choice(["succeeded", "failed", "cancelled", "queued"], N_JOBS,
                          p=[0.8, 0.1, 0.05, 0.05])  # fmt: skip
    conn.execute(insert(TrainingJob), [{
        "model_id": j % N_MODELS + 1, "channel_id": j % len(CHANNELS) + 1, "dataset_id": 1,
        "architecture": "resnet-small", "hyperparameters": HYPERPARAMETERS, "status": str(s),
        "progress": 1.0 if s == "succeeded" else 0.0, "total_epochs": 20,
        "error": "boom" if s == "failed" else None, "requested_by": "bench",
        "created_at": now - timedelta(minutes=N_JOBS - j),
    } for j, s in enumerate(statuses)])  # fmt: skip
