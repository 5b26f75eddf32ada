"""Models and their numbered versions, with lineage and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.errors import ConflictError
from db.models import Channel, Dataset, Model, ModelVersion, VersionTrainingItem
from db.repo.lookup import get_row, must_exist


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    description: str
    created_at: datetime
    num_versions: int = 0
    latest_version: int | None = None


@dataclass(frozen=True)
class VersionInfo:
    id: int
    model_id: int
    model_name: str
    version: int
    architecture: str
    artifact_path: str
    artifact_sha256: str
    hyperparameters: dict[str, Any]
    dataset_id: int
    dataset_name: str
    dataset_fingerprint: str
    parent_version_id: int | None
    job_id: int | None
    framework_versions: dict[str, Any]
    device: str
    train_seconds: float
    history: list[dict[str, Any]]
    evaluation: dict[str, Any]
    accuracy: float | None
    f1_macro: float | None
    feedback_samples: int
    test_predictions_path: str | None
    split_seed: int
    created_by: str
    created_at: datetime
    serving_channels: list[str] = field(default_factory=list)
    # The dataset holdout it was scored on; None = unknown (trained before holdouts were fixed).
    holdout_fingerprint: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version}"


def create_model(
    *, session: Session, name: str, description: str = "", actor: str | None = None
) -> ModelInfo:
    """Insert a model row. `actor` is unused (the audit row is `core.actions.models`'s job);
    it stays so older callers keep working."""
    name = name.strip()
    if not name:
        raise ConflictError("a model needs a name")
    if session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise ConflictError(f"a model named {name!r} already exists")
    row = Model(name=name, description=description)
    session.add(row)
    session.flush()
    return ModelInfo(row.id, row.name, row.description, row.created_at)


def get_or_create_model(*, session: Session, name: str) -> ModelInfo:
    """Test and fixture helper; user-facing code names models through `core.actions.models`."""
    return find_model(session=session, name=name) or create_model(session=session, name=name)


def find_model(*, session: Session, name: str) -> ModelInfo | None:
    row = session.scalar(select(Model).where(Model.name == name))
    return None if row is None else ModelInfo(row.id, row.name, row.description, row.created_at)


def get_model(*, session: Session, model_id: int) -> ModelInfo:
    row = get_row(session, Model, model_id, "model")
    return ModelInfo(row.id, row.name, row.description, row.created_at)


def get_model_by_name(*, session: Session, name: str) -> ModelInfo:
    row = must_exist(session.scalar(select(Model).where(Model.name == name)), f"model {name!r}")
    return ModelInfo(row.id, row.name, row.description, row.created_at)


def list_models(*, session: Session) -> list[ModelInfo]:
    counts = (
        select(
            ModelVersion.model_id,
            func.count().label("n"),
            func.max(ModelVersion.version).label("latest"),
        )
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    rows = session.execute(
        select(Model, counts.c.n, counts.c.latest)
        .outerjoin(counts, counts.c.model_id == Model.id)
        .order_by(Model.name)
    )
    return [
        ModelInfo(m.id, m.name, m.description, m.created_at, n or 0, latest)
        for m, n, latest in rows
    ]


def _version_info(
    row: ModelVersion, model_name: str, dataset_name: str, channels=()
) -> VersionInfo:
    return VersionInfo(
        id=row.id,
        model_id=row.model_id,
        model_name=model_name,
        version=row.version,
        architecture=row.architecture,
        artifact_path=row.artifact_path,
        artifact_sha256=row.artifact_sha256,
        hyperparameters=dict(row.hyperparameters or {}),
        dataset_id=row.dataset_id,
        dataset_name=dataset_name,
        dataset_fingerprint=row.dataset_fingerprint,
        parent_version_id=row.parent_version_id,
        job_id=row.job_id,
        framework_versions=dict(row.framework_versions or {}),
        device=row.device,
        train_seconds=row.train_seconds,
        history=list(row.history or []),
        evaluation=dict(row.evaluation or {}),
        accuracy=row.accuracy,
        f1_macro=row.f1_macro,
        feedback_samples=row.feedback_samples,
        test_predictions_path=row.test_predictions_path,
        split_seed=row.split_seed,
        created_by=row.created_by,
        created_at=row.created_at,
        serving_channels=list(channels),
        holdout_fingerprint=row.holdout_fingerprint,
    )


def register_version(
    *,
    session: Session,
    model_id: int,
    architecture: str,
    artifact_path: str,
    artifact_sha256: str,
    hyperparameters: dict[str, Any],
    dataset_id: int,
    dataset_fingerprint: str,
    evaluation: dict[str, Any],
    history: list[dict[str, Any]],
    framework_versions: dict[str, Any],
    device: str,
    train_seconds: float,
    parent_version_id: int | None = None,
    job_id: int | None = None,
    test_predictions_path: str | None = None,
    split_seed: int = 0,
    training_items: list[tuple[int, int, int]] = (),
    actor: str = "system",
    holdout_fingerprint: str | None = None,
) -> VersionInfo:
    """Add the next version of a model. `training_items`: (feedback, annotation, class);
    `holdout_fingerprint`: the dataset holdout its evaluation was computed on."""
    model = get_row(session, Model, model_id, "model")
    number = (
        session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id)
        )
        or 0
    ) + 1
    row = ModelVersion(
        model_id=model_id,
        version=number,
        architecture=architecture,
        artifact_path=artifact_path,
        artifact_sha256=artifact_sha256,
        hyperparameters=hyperparameters,
        dataset_id=dataset_id,
        dataset_fingerprint=dataset_fingerprint,
        parent_version_id=parent_version_id,
        job_id=job_id,
        framework_versions=framework_versions,
        device=device,
        train_seconds=train_seconds,
        history=history,
        evaluation=evaluation,
        accuracy=evaluation.get("accuracy"),
        f1_macro=evaluation.get("f1_macro"),
        feedback_samples=len(training_items),
        test_predictions_path=test_predictions_path,
        split_seed=split_seed,
        created_by=actor,
        holdout_fingerprint=holdout_fingerprint,
    )
    session.add(row)
    session.flush()
    for feedback_id, annotation_id, true_class in training_items:
        session.add(
            VersionTrainingItem(
                version_id=row.id,
                feedback_id=feedback_id,
                annotation_id=annotation_id,
                true_class=true_class,
            )
        )
    dataset_name = session.scalar(select(Dataset.name).where(Dataset.id == dataset_id)) or "?"
    return _version_info(row, model.name, dataset_name)


def channels_by_version(session: Session, version_ids: list[int]) -> dict[int, list[str]]:
    """Version id -> the channels it serves, by slug, "slug (candidate)" where it is the canary."""
    rows = session.execute(
        select(Channel.slug, Channel.production_version_id, Channel.candidate_version_id)
        .where(
            or_(
                Channel.production_version_id.in_(version_ids),
                Channel.candidate_version_id.in_(version_ids),
            )
        )
        .order_by(Channel.slug)
    )
    serving: dict[int, list[str]] = {}
    for slug, prod, cand in rows:
        if prod in version_ids:
            serving.setdefault(prod, []).append(slug)
        if cand in version_ids:
            serving.setdefault(cand, []).append(f"{slug} (candidate)")
    return serving


def get_version(*, session: Session, version_id: int) -> VersionInfo:
    row = session.execute(
        select(ModelVersion, Model.name, Dataset.name)
        .join(Model, Model.id == ModelVersion.model_id)
        .join(Dataset, Dataset.id == ModelVersion.dataset_id)
        .where(ModelVersion.id == version_id)
    ).first()
    version, model_name, dataset_name = must_exist(row, f"model version {version_id}")
    serving = channels_by_version(session, [version_id]).get(version_id, [])
    return _version_info(version, model_name, dataset_name, serving)


def find_version(*, session: Session, model_name: str, version: int) -> VersionInfo:
    version_id = session.scalar(
        select(ModelVersion.id)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.name == model_name, ModelVersion.version == version)
    )
    return get_version(
        session=session, version_id=must_exist(version_id, f"{model_name} v{version}")
    )


def list_versions(
    *, session: Session, model_id: int | None = None, limit: int = 50, offset: int = 0
) -> list[VersionInfo]:
    """Newest first; the full registry table with filters lives in the dashboard queries."""
    query = (
        select(ModelVersion, Model.name, Dataset.name)
        .join(Model, Model.id == ModelVersion.model_id)
        .join(Dataset, Dataset.id == ModelVersion.dataset_id)
        .order_by(ModelVersion.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if model_id is not None:
        query = query.where(ModelVersion.model_id == model_id)
    serving: dict[int, list[str]] = {}
    for slug, prod, cand in session.execute(
        select(Channel.slug, Channel.production_version_id, Channel.candidate_version_id)
    ):
        for version_id in {prod, cand} - {None}:
            serving.setdefault(version_id, []).append(slug)
    return [
        _version_info(v, m, d, sorted(serving.get(v.id, []))) for v, m, d in session.execute(query)
    ]


def training_items_of(*, session: Session, version_id: int) -> list[tuple[int, int, int]]:
    """(feedback id, annotation id, true class) of the feedback a version learned from."""
    rows = session.execute(
        select(
            VersionTrainingItem.feedback_id,
            VersionTrainingItem.annotation_id,
            VersionTrainingItem.true_class,
        ).where(VersionTrainingItem.version_id == version_id)
    )
    return [tuple(r) for r in rows]
