"""SQLAlchemy 2 ORM models: one class per noun of the ChannelHub registry (see DESIGN.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column

from db.errors import RegistryError
from db.types import UTCDateTime

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "lost")
ACTIVE_JOB_STATUSES = ("queued", "running")
CHANNEL_KINDS = ("web", "mobile", "api", "batch")
CHANNEL_STATUSES = ("active", "paused")
DEVICE_REQUESTS = ("auto", "gpu", "cpu")
VERDICTS = ("confirmed", "corrected", "rejected")
REVIEW_STATUSES = ("pending",) + VERDICTS
RATINGS = ("up", "down")
ARMS = ("production", "candidate")
# Rollup resolutions in seconds: minutes serve the 1 h and 24 h windows, hours the 7 d and 30 d.
ROLLUP_RESOLUTIONS = (60, 3600)
ALERT_SIGNALS = ("accuracy", "latency", "errors", "drift")


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # digits | folder | npz | keras
    location: Mapped[str | None] = mapped_column(String(500))
    class_names: Mapped[list[Any]] = mapped_column(JSON)
    input_shape: Mapped[list[Any]] = mapped_column(JSON)
    num_samples: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The validation/test split fixed at registration (core.ml.holdout bytes; deferred: lists
    # never load it), the sha256 naming its test part, and what a page shows of it.
    holdout: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    holdout_fingerprint: Mapped[str | None] = mapped_column(String(64))
    holdout_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Whether a mirrored image keeps its class: the default augmentation flips only where true.
    flip_safe: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        Index("ix_model_versions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(String(50))
    artifact_path: Mapped[str] = mapped_column(String(500))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_fingerprint: Mapped[str] = mapped_column(String(64))
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", use_alter=True, name="fk_model_versions_job_id")
    )
    framework_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device: Mapped[str] = mapped_column(String(50), default="cpu")
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Headline metrics copied out of `evaluation` so lists can sort and filter in SQL.
    accuracy: Mapped[float | None] = mapped_column(Float)
    f1_macro: Mapped[float | None] = mapped_column(Float)
    feedback_samples: Mapped[int] = mapped_column(Integer, default=0)
    test_predictions_path: Mapped[str | None] = mapped_column(String(500))
    split_seed: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The dataset holdout the version was scored on; None = unknown (trained before holdouts).
    holdout_fingerprint: Mapped[str | None] = mapped_column(String(64))


class VersionTrainingItem(Base):
    """A feedback item (through its annotation) that a version learned from."""

    __tablename__ = "version_training_items"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), primary_key=True)
    annotation_id: Mapped[int] = mapped_column(ForeignKey("annotations.id"))
    true_class: Mapped[int] = mapped_column(Integer)


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    production_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    candidate_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    candidate_traffic: Mapped[float] = mapped_column(Float, default=0.0)
    slo_min_accuracy: Mapped[float | None] = mapped_column(Float)
    slo_max_p95_ms: Mapped[float | None] = mapped_column(Float)
    # Live objectives (issue: the loop on evidence). Accuracy is on annotated feedback and needs
    # at least `slo_min_feedback` annotated items in the window before it can breach.
    slo_min_feedback: Mapped[int] = mapped_column(Integer, default=20)
    slo_max_error_rate: Mapped[float | None] = mapped_column(Float)
    slo_max_drift_psi: Mapped[float | None] = mapped_column(Float)
    # An alert opens when `alert_m` of the last `alert_n` evaluated buckets breach.
    alert_m: Mapped[int] = mapped_column(Integer, default=3)
    alert_n: Mapped[int] = mapped_column(Integer, default=5)
    drift_min_count: Mapped[int] = mapped_column(Integer, default=200)
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str] = mapped_column(String(300), default="")
    api_key_hash: Mapped[str | None] = mapped_column(String(128))
    api_key_prefix: Mapped[str | None] = mapped_column(String(16))
    # After a rotation the previous key keeps working until `previous_key_expires_at` (grace).
    previous_api_key_hash: Mapped[str | None] = mapped_column(String(128))
    previous_key_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Requests per second allowed per key (token bucket in each API process); None = unlimited.
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)
    # Written by the API at most once a minute per key.
    api_key_last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The promotion gate (core/gate.py): candidate holdout accuracy >= floor (None: no floor),
    # candidate - production >= -max regression, on the feedback slice once it has min items.
    gate_min_accuracy: Mapped[float | None] = mapped_column(Float)
    gate_max_regression: Mapped[float] = mapped_column(Float, default=0.01)
    gate_min_slice: Mapped[int] = mapped_column(Integer, default=20)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[list[Any]] = mapped_column(JSON, default=list)
    accepts: Mapped[str] = mapped_column(String(20), default="cpu")  # "cpu" or "gpu,cpu"
    status: Mapped[str] = mapped_column(String(20), default="online")  # online | stopped
    current_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", use_alter=True, name="fk_workers_current_job_id")
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrainingJob(Base):
    __tablename__ = "training_jobs"
    __table_args__ = (Index("ix_training_jobs_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    architecture: Mapped[str] = mapped_column(String(50))
    include_feedback: Mapped[bool] = mapped_column(Boolean, default=False)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    device_request: Mapped[str] = mapped_column(String(10), default="auto")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100), default="system")
    note: Mapped[str] = mapped_column(Text, default="")
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    device: Mapped[str | None] = mapped_column(String(50))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id"))
    result_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    # "Canary when done": the controller hands the finished version to the gate and a canary.
    then_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    handed_to_canary_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobEpoch(Base):
    __tablename__ = "job_epochs"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_job_epochs_job_epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobLog(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id"), index=True)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HoldoutImage(Base):
    """One validation or test image of a dataset's holdout, by its pixels' digest: feedback
    on a prediction whose input is one of them is marked `Feedback.holdout_image`."""

    __tablename__ = "holdout_images"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(40), primary_key=True)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_channel_created", "channel_id", "created_at"),
        # Covers the overview's per-channel count, p95 and hourly trend without row lookups.
        Index("ix_predictions_channel_created_latency", "channel_id", "created_at", "latency_ms"),
        Index("ix_predictions_version", "version_id"),
    )

    # Time-ordered hex id generated by the API process, so it can answer before the row is written.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    arm: Mapped[str] = mapped_column(String(20), default="production")
    predicted_class: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    input_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Sent by `channelhub simulate` (and the demo): shown as simulated wherever it appears.
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    # core.ml.images.image_digest of the input as the model saw it (None: logged before 0016).
    input_digest: Mapped[str | None] = mapped_column(String(40))


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_review", "review_status", "created_at"),
        Index("ix_feedback_channel_created", "channel_id", "created_at"),
        # Pending counts per channel and the review queue filtered by channel and status.
        Index("ix_feedback_channel_status", "channel_id", "review_status", "created_at"),
        # Covers the counts per status (pending per channel and rating; annotated, not learned,
        # per version) so that a million items are counted from the index alone.
        Index(
            "ix_feedback_status_counts",
            "review_status",
            "channel_id",
            "rating",
            "version_id",
            "used_in_version_id",
        ),  # fmt: skip
        # What a retrain would add (annotated, not a holdout image) and, of it, what waits for
        # one (not learned, not left out), per version: counted from the index alone.
        Index(
            "ix_feedback_trainable",
            "review_status",
            "holdout_image",
            "used_in_version_id",
            "left_out_by_version_id",
            "version_id",
        ),  # fmt: skip
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    # Copied from the prediction so the review queue filters without a join on 1M rows.
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    predicted_class: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    rating: Mapped[str] = mapped_column(String(10))
    claimed_class: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    review_status: Mapped[str] = mapped_column(String(20), default="pending")
    used_in_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    # The retrain that left the item out: its image is one of the holdout's (scored on, never
    # trained on), or no retrain can learn it (its input gone or unreadable, its class unknown).
    # No later retrain adds it, so it does not wait for one.
    left_out_by_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", name="fk_feedback_left_out_by_version")
    )
    # The prediction's input is one of its version's dataset's holdout images (known from the
    # digests when the feedback arrives): never trained on, so it never waits for a retrain.
    holdout_image: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Annotation(Base):
    __tablename__ = "annotations"
    __table_args__ = (Index("ix_annotations_feedback_current", "feedback_id", "is_current"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"))
    verdict: Mapped[str] = mapped_column(String(20))
    true_class: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(100))
    # Changing a verdict adds a row and clears this flag on the old one: history is kept.
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Rollup(Base):
    """Per channel, version, arm and time bucket: what the prediction log and feedback saw.

    Histograms are lists of counts over fixed edges (core.ml.monitoring_stats); pages and the
    controller read these rows, never the raw prediction table."""

    __tablename__ = "rollups"
    __table_args__ = (
        UniqueConstraint(
            "channel_id", "version_id", "arm", "resolution_s", "bucket_start", name="uq_rollups_key"
        ),
        Index("ix_rollups_window", "channel_id", "resolution_s", "bucket_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    arm: Mapped[str] = mapped_column(String(20))
    resolution_s: Mapped[int] = mapped_column(Integer)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime())
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    simulated: Mapped[int] = mapped_column(Integer, default=0)
    latency_sum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    latency_hist: Mapped[list[Any]] = mapped_column(JSON, default=list)
    confidence_hist: Mapped[list[Any]] = mapped_column(JSON, default=list)
    class_counts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    intensity_hist: Mapped[list[Any]] = mapped_column(JSON, default=list)
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_down: Mapped[int] = mapped_column(Integer, default=0)
    annotated_right: Mapped[int] = mapped_column(Integer, default=0)
    annotated_wrong: Mapped[int] = mapped_column(Integer, default=0)


class Alert(Base):
    """A live SLO breach: opened by the controller, cleared by it, acknowledged by a person."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_channel_open", "channel_id", "cleared_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    signal: Mapped[str] = mapped_column(String(20))  # accuracy | latency | errors | drift
    arm: Mapped[str] = mapped_column(String(20), default="production")
    # The version the arm served when the alert opened (None: opened before this was kept). The
    # controller clears an alert once another version serves: that one is judged on its own.
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", name="fk_alerts_version")
    )
    message: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class User(Base):
    """A person who signs in to the dashboard: argon2 hash only, never the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # viewer | annotator | manager | admin
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserSession(Base):
    """A signed-in browser: the sha256 of its random token (the token itself stays in the
    browser's cookie), until it expires or the user signs out."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


CANARY_STATUSES = ("running", "promoted", "rolled_back")
CANARY_DECISIONS = ("advance", "hold", "rollback", "promote")


class Canary(Base):
    """A stepped canary: the plan (traffic steps, minimum requests per arm and time per step,
    tolerances) and where it stands. The controller moves it; every move is a CanaryDecision."""

    __tablename__ = "canaries"
    __table_args__ = (Index("ix_canaries_channel_status", "channel_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    candidate_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    production_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    steps: Mapped[list[Any]] = mapped_column(JSON)  # traffic percents, ascending, last is 100
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    previous_step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    min_requests: Mapped[int] = mapped_column(Integer, default=200)
    min_seconds: Mapped[int] = mapped_column(Integer, default=300)
    max_error_increase: Mapped[float] = mapped_column(Float, default=0.02)
    max_p95_increase: Mapped[float] = mapped_column(Float, default=0.5)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CanaryDecision(Base):
    """One verdict on a canary step: advance, hold, rollback or promote, why, and the numbers
    per arm it was taken on (requests, error rate, p95, drift PSI, feedback accuracy)."""

    __tablename__ = "canary_decisions"
    __table_args__ = (Index("ix_canary_decisions_channel_created", "channel_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    canary_id: Mapped[int] = mapped_column(ForeignKey("canaries.id"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    step_index: Mapped[int] = mapped_column(Integer)
    traffic: Mapped[float] = mapped_column(Float)  # the step's candidate share, 0-1
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


GATE_OUTCOMES = ("passed", "overridden", "refused")


class GateDecision(Base):
    """The promotion gate's verdict on making a version production or a canary: the evidence
    (holdout and feedback-slice accuracy of both versions, per class, with intervals), which
    rules failed, the outcome, who decided and the override reason."""

    __tablename__ = "gate_decisions"
    __table_args__ = (Index("ix_gate_decisions_channel_created", "channel_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    production_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    action: Mapped[str] = mapped_column(String(50))  # channel.promote | channel.start_canary
    outcome: Mapped[str] = mapped_column(String(20))  # passed | overridden | refused
    holdout_fingerprint: Mapped[str | None] = mapped_column(String(64))
    failed: Mapped[list[Any]] = mapped_column(JSON, default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    override_reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditRowsAreAppendOnly(RegistryError):
    """Something tried to change or remove an audit row."""

    kind = "conflict"


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_audit_change(_mapper, _connection, target: AuditEvent) -> None:
    raise AuditRowsAreAppendOnly(f"audit event {target.id} cannot be changed or deleted")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_audit_change(state: ORMExecuteState) -> None:
    """`update(AuditEvent)` / `delete(AuditEvent)` skip the mapper events above."""
    if (state.is_update or state.is_delete) and state.bind_mapper is AuditEvent.__mapper__:
        raise AuditRowsAreAppendOnly("audit events cannot be changed or deleted")
