"""Training jobs: queue, exactly-once claim, progress, cancel, finish, lost-worker reaping, retry.

A `JobRequest` is validated by `core.training.jobs.enqueue_job` before `insert_job` is called.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from db.errors import ConflictError, RegistryError
from db.models import (
    DEVICE_REQUESTS,
    Channel,
    Dataset,
    JobEpoch,
    JobLog,
    Model,
    ModelVersion,
    TrainingJob,
    Worker,
    utcnow,
)
from db.repo.lookup import get_row, must_exist
from db.repo.rows import info_of
from db.repo.workers import WORKER_STALE_AFTER_S, accepted_requests

FINISHED = ("succeeded", "failed", "cancelled", "lost")
RETRYABLE = ("failed", "cancelled", "lost")


@dataclass(frozen=True)
class JobInfo:
    id: int
    model_id: int
    model_name: str
    channel_slug: str | None
    base_version_id: int | None
    base_version: int | None
    dataset_id: int
    dataset_name: str
    architecture: str
    include_feedback: bool
    hyperparameters: dict[str, Any]
    device_request: str
    status: str
    progress: float
    current_epoch: int
    total_epochs: int
    error: str | None
    requested_by: str
    note: str
    worker_id: int | None
    worker_name: str | None
    device: str | None
    cancel_requested: bool
    retry_of_id: int | None
    result_version_id: int | None
    result_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


def _select_jobs():
    base, result = aliased(ModelVersion), aliased(ModelVersion)
    return (
        select(
            TrainingJob,
            Model.name,
            Channel.slug,
            Dataset.name,
            Worker.name,
            base.version,
            result.version,
        )
        .join(Model, Model.id == TrainingJob.model_id)
        .join(Dataset, Dataset.id == TrainingJob.dataset_id)
        .outerjoin(Channel, Channel.id == TrainingJob.channel_id)
        .outerjoin(Worker, Worker.id == TrainingJob.worker_id)
        .outerjoin(base, base.id == TrainingJob.base_version_id)
        .outerjoin(result, result.id == TrainingJob.result_version_id)
    )


def _info(row) -> JobInfo:
    j, model_name, slug, dataset_name, worker_name, base_v, result_v = row
    return JobInfo(
        j.id, j.model_id, model_name, slug, j.base_version_id, base_v, j.dataset_id, dataset_name,
        j.architecture, j.include_feedback, dict(j.hyperparameters or {}), j.device_request,
        j.status, j.progress, j.current_epoch, j.total_epochs, j.error, j.requested_by, j.note,
        j.worker_id, worker_name, j.device, j.cancel_requested, j.retry_of_id,
        j.result_version_id, result_v, j.created_at, j.started_at, j.finished_at, j.heartbeat_at,
    )  # fmt: skip


@dataclass(frozen=True)
class JobRequest:
    """What a retrain asks for: passed whole from the action through validation to the insert."""

    model_id: int
    dataset_id: int
    architecture: str
    hyperparameters: dict[str, Any]
    base_version_id: int | None = None
    channel_id: int | None = None
    include_feedback: bool = False
    device_request: str = "auto"
    requested_by: str = "system"
    note: str = ""


def _check_references(session: Session, request: JobRequest) -> None:
    if request.device_request not in DEVICE_REQUESTS:
        raise RegistryError(
            f"device must be one of {', '.join(DEVICE_REQUESTS)} (got {request.device_request!r})"
        )
    get_row(session, Model, request.model_id, "model")
    get_row(session, Dataset, request.dataset_id, "dataset")
    if request.base_version_id is not None:
        base = get_row(session, ModelVersion, request.base_version_id, "base version")
        if base.model_id != request.model_id:
            raise ConflictError(f"base version {request.base_version_id} belongs to another model")
    if request.channel_id is not None:
        get_row(session, Channel, request.channel_id, "channel")


def insert_job(*, session: Session, request: JobRequest, retry_of_id: int | None = None) -> JobInfo:
    """Queue a job whose hyperparameters the caller has validated; checks the references."""
    _check_references(session, request)
    job = TrainingJob(
        **asdict(request),  # asdict copies the hyperparameters
        retry_of_id=retry_of_id,
        total_epochs=int(request.hyperparameters.get("epochs", 0)),
    )
    session.add(job)
    session.flush()
    return get_job(session=session, job_id=job.id)


def get_job(*, session: Session, job_id: int) -> JobInfo:
    row = session.execute(_select_jobs().where(TrainingJob.id == job_id)).first()
    return _info(must_exist(row, f"job {job_id}"))


def list_jobs(
    *, session: Session, statuses: tuple[str, ...] = (), limit: int = 100, offset: int = 0
) -> list[JobInfo]:
    query = _select_jobs().order_by(TrainingJob.id.desc()).limit(limit).offset(offset)
    if statuses:
        query = query.where(TrainingJob.status.in_(statuses))
    return [_info(r) for r in session.execute(query)]


def count_jobs(*, session: Session, statuses: tuple[str, ...] = ()) -> int:
    query = select(func.count()).select_from(TrainingJob)
    if statuses:
        query = query.where(TrainingJob.status.in_(statuses))
    return session.scalar(query) or 0


def claim_next_job(*, session: Session, worker_id: int, gpus: list[str]) -> JobInfo | None:
    """Take the oldest queued job this worker may run. Exactly one worker wins a job: the
    claim is a conditional UPDATE on status='queued'. On PostgreSQL the one candidate is read
    FOR UPDATE SKIP LOCKED, so a worker passes over the job another is claiming (and locks
    only the job it takes) instead of waiting for it."""
    accepts = accepted_requests(gpus)
    candidates = (
        select(TrainingJob.id)
        .where(TrainingJob.status == "queued", TrainingJob.device_request.in_(accepts))
        .order_by(TrainingJob.created_at, TrainingJob.id)
        .limit(5)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.limit(1).with_for_update(skip_locked=True)
    for job_id in session.scalars(candidates).all():
        now = utcnow()
        claimed = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "queued")
            .values(status="running", worker_id=worker_id, started_at=now, heartbeat_at=now)
        ).rowcount
        if claimed == 1:
            return get_job(session=session, job_id=job_id)
    return None


def _update_running(session: Session, job_id: int, worker_id: int, **values) -> bool:
    result = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.status == "running",
            TrainingJob.worker_id == worker_id,
        )
        .values(**values)
    )
    return result.rowcount == 1


def start_job(
    *, session: Session, job_id: int, worker_id: int, device: str, total_epochs: int
) -> bool:
    return _update_running(
        session, job_id, worker_id, device=device, total_epochs=total_epochs, heartbeat_at=utcnow()
    )


def record_epoch(
    *,
    session: Session,
    job_id: int,
    worker_id: int,
    epoch: int,
    total: int,
    metrics: dict[str, Any],
) -> bool:
    """Store one epoch's metrics and move the progress bar. False if the job is no longer ours."""
    if not _update_running(
        session, job_id, worker_id, current_epoch=epoch, total_epochs=total,
        progress=min(epoch / max(total, 1), 1.0), heartbeat_at=utcnow(),
    ):  # fmt: skip
        return False
    session.add(JobEpoch(job_id=job_id, epoch=epoch, metrics=metrics))
    return True


def append_log(*, session: Session, job_id: int, message: str, level: str = "info") -> None:
    session.add(JobLog(job_id=job_id, message=message[:4000], level=level))


def heartbeat_job(*, session: Session, job_id: int, worker_id: int) -> bool:
    return _update_running(session, job_id, worker_id, heartbeat_at=utcnow())


def finish_job(
    *,
    session: Session,
    job_id: int,
    worker_id: int,
    status: str,
    error: str | None = None,
    result_version_id: int | None = None,
) -> bool:
    if status not in ("succeeded", "failed", "cancelled"):
        raise RegistryError(f"cannot finish a job as {status!r}")
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "succeeded":
        values.update(progress=1.0, result_version_id=result_version_id)
    return _update_running(session, job_id, worker_id, **values)


def is_cancel_requested(*, session: Session, job_id: int) -> bool:
    return bool(
        session.scalar(select(TrainingJob.cancel_requested).where(TrainingJob.id == job_id))
    )


def request_cancel(*, session: Session, job_id: int) -> JobInfo:
    """A queued job is cancelled at once; a running one stops at its next epoch end."""
    job = get_row(session, TrainingJob, job_id, "job")
    if job.status in FINISHED:
        raise ConflictError(f"job {job_id} has already finished ({job.status})")
    session.execute(
        update(TrainingJob).where(TrainingJob.id == job_id).values(cancel_requested=True)
    )
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == "queued")
        .values(status="cancelled", finished_at=utcnow(), error="cancelled before it started")
    )
    session.expire_all()
    return get_job(session=session, job_id=job_id)


def reap_lost_jobs(*, session: Session, stale_after_s: float = WORKER_STALE_AFTER_S) -> list[int]:
    """Mark running jobs whose worker stopped heartbeating as lost; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    stale = session.scalars(
        select(TrainingJob.id).where(
            TrainingJob.status == "running", TrainingJob.heartbeat_at < cutoff
        )
    ).all()
    lost = []
    for job_id in stale:
        done = session.execute(
            update(TrainingJob)
            .where(
                TrainingJob.id == job_id,
                TrainingJob.status == "running",
                TrainingJob.heartbeat_at < cutoff,
            )
            .values(
                status="lost",
                finished_at=utcnow(),
                error=f"worker stopped heartbeating for more than {stale_after_s:.0f} s",
            )
        ).rowcount
        if done:
            append_log(session=session, job_id=job_id, message="job marked lost", level="error")
            lost.append(job_id)
    return lost


def retry_job(*, session: Session, job_id: int, actor: str = "system") -> JobInfo:
    """Queue a copy of a failed, cancelled or lost job."""
    job = get_row(session, TrainingJob, job_id, "job")
    if job.status not in RETRYABLE:
        raise ConflictError(
            f"only failed, cancelled or lost jobs can be retried (job {job_id} is {job.status})"
        )
    request = info_of(JobRequest, job, requested_by=actor)
    return insert_job(session=session, request=request, retry_of_id=job.id)


def job_epochs(*, session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(JobEpoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
    )
    return [{"epoch": r.epoch, **(r.metrics or {})} for r in rows]


def job_logs(*, session: Session, job_id: int, limit: int = 50) -> list[tuple[datetime, str, str]]:
    rows = session.scalars(
        select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(limit)
    ).all()
    return [(r.created_at, r.level, r.message) for r in reversed(rows)]


def mark_then_canary(*, session: Session, job_id: int) -> None:
    """Ask the controller to put this job's version into a canary when it succeeds."""
    session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(then_canary=True))


def jobs_awaiting_canary(*, session: Session) -> list[JobInfo]:
    """Succeeded "canary when done" jobs whose version was not handed over yet."""
    query = _select_jobs().where(
        TrainingJob.then_canary.is_(True),
        TrainingJob.status == "succeeded",
        TrainingJob.handed_to_canary_at.is_(None),
        TrainingJob.result_version_id.is_not(None),
    )
    return [_info(row) for row in session.execute(query)]


def mark_handed_to_canary(*, session: Session, job_id: int) -> bool:
    """Claim the hand-over once (conditional update), so two controllers never both act."""
    done = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.handed_to_canary_at.is_(None))
        .values(handed_to_canary_at=utcnow())
    )
    return done.rowcount == 1
