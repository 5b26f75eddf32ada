"""Small builders for registry rows used by several test modules (real SQLite, no mocks)."""

from __future__ import annotations

from typing import Any

from core.actions.feedback import submit_feedback
from db.repo.channels import ChannelSpec, create_channel, promote_version
from db.repo.datasets import DatasetRecord, register_dataset
from db.repo.feedback import FeedbackInput
from db.repo.models import VersionInfo, create_model, register_version

# The dataset holdout every helper version was scored on: the promotion gate compares them.
HOLDOUT = "h" * 64
EVALUATION = {
    "accuracy": 0.9,
    "loss": 0.3,
    "precision_macro": 0.9,
    "recall_macro": 0.9,
    "f1_macro": 0.9,
    "per_class": [],
    "confusion_matrix": [],
}


def add_dataset(session, name: str = "digits") -> int:
    info = register_dataset(
        session=session,
        record=DatasetRecord(
            name=name,
            source="digits",
            location=None,
            class_names=[str(i) for i in range(10)],
            input_shape=[8, 8, 1],
            num_samples=1797,
            fingerprint="f" * 64,
        ),
    )
    return info.id


def add_version(session, model_id: int, dataset_id: int, **changes: Any) -> VersionInfo:
    """The model's next version: a seed-cnn scored EVALUATION on HOLDOUT, with no artifact on
    disk; `changes` are the register_version arguments a test needs otherwise."""
    arguments: dict[str, Any] = {
        "architecture": "seed-cnn",
        "artifact_path": "/nonexistent/model.keras",
        "artifact_sha256": "0" * 64,
        "hyperparameters": {"epochs": 1},
        "dataset_fingerprint": "f" * 64,
        "evaluation": EVALUATION,
        "history": [],
        "framework_versions": {},
        "device": "cpu",
        "train_seconds": 1.0,
        "holdout_fingerprint": HOLDOUT,
    }
    arguments.update(changes)
    return register_version(session=session, model_id=model_id, dataset_id=dataset_id, **arguments)


def add_model_with_version(session, dataset_id: int, name: str = "digits-classifier"):
    model = create_model(session=session, name=name)
    return model, add_version(session, model.id, dataset_id)


def user_feedback(
    prediction_id: str,
    channel_id: int,
    rating: str,
    claimed_class: int | None = None,
    *,
    session=None,
) -> int:
    """An end user's thumb on a prediction of a ten-class model, submitted through the action as
    "user" (in `session` when given, else in its own); the feedback id."""
    feedback = FeedbackInput(
        prediction_id=prediction_id,
        channel_id=channel_id,
        rating=rating,
        claimed_class=claimed_class,
        num_classes=10,
    )
    return submit_feedback(actor="user", session=session, feedback=feedback).id


def serving_channel(session, slug: str = "web"):
    """A fresh model, its one version and channel `slug` (web kind) serving it in production:
    (model, version, channel)."""
    model, version = add_model_with_version(session, add_dataset(session))
    channel, _ = create_channel(
        session=session,
        slug=slug,
        spec=ChannelSpec(name=slug.title(), kind="web", model_id=model.id),
    )
    promote_version(session=session, slug=slug, version_id=version.id)
    return model, version, channel
