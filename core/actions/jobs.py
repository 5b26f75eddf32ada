"""Training job actions: queue a retrain, cancel or retry it, mark a vanished worker's job lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from db.errors import ConflictError
from db.repo import jobs as repo
from db.repo.jobs import JobInfo, JobRequest
from db.repo.workers import WORKER_STALE_AFTER_S


@action("job.enqueue", role="manager")
def enqueue_retrain(
    *,
    session: Session,
    actor: Actor,
    model_id: int,
    dataset_id: int,
    architecture: str,
    hyperparameters: dict[str, Any],
    base_version_id: int | None = None,
    channel_id: int | None = None,
    include_feedback: bool = False,
    device_request: str = "auto",
    note: str = "",
) -> JobInfo:
    """Queue a retrain; `core.training.jobs.enqueue_job` validates it (JobRequestError)."""
    from core.training.jobs import enqueue_job  # validation lives with the worker's contract

    request = JobRequest(
        model_id=model_id, dataset_id=dataset_id, architecture=architecture,
        hyperparameters=hyperparameters, base_version_id=base_version_id, channel_id=channel_id,
        include_feedback=include_feedback, device_request=device_request,
        requested_by=actor.name, note=note,
    )  # fmt: skip
    job = enqueue_job(session=session, request=request)
    audit(
        session, actor, "job.enqueue", "job", job.id,
        model_id=model_id, dataset_id=dataset_id, architecture=architecture,
        base_version_id=base_version_id, include_feedback=include_feedback,
        device_request=device_request, hyperparameters=job.hyperparameters, reason=job.note,
    )  # fmt: skip
    return job


@action("job.cancel", role="manager")
def cancel_job(*, session: Session, actor: Actor, job_id: int, reason: str = "") -> JobInfo:
    """Cancel a queued job at once, or ask a running one to stop at its next epoch end."""
    before = repo.get_job(session=session, job_id=job_id).status
    job = repo.request_cancel(session=session, job_id=job_id)
    audit(
        session, actor, "job.cancel", "job", job_id,
        before=before, after=job.status, reason=reason.strip(),
    )  # fmt: skip
    return job


@action("job.retry", role="manager")
def retry_job(*, session: Session, actor: Actor, job_id: int, reason: str = "") -> JobInfo:
    """Queue a copy of a failed, cancelled or lost job."""
    job = repo.retry_job(session=session, job_id=job_id, actor=actor.name)
    audit(session, actor, "job.retry", "job", job.id, retry_of=job_id, reason=reason.strip())
    return job


@action("job.reap_lost", role="viewer")
def reap_lost_jobs(
    *, session: Session, actor: Actor, stale_after_s: float = WORKER_STALE_AFTER_S
) -> list[int]:
    """Mark running jobs whose worker stopped heartbeating as lost; returns their ids.

    Any reader of the queue may: a job's worker is gone whoever notices it (the controller,
    the Jobs page, `jobs list`), and nothing is audited when nothing was lost."""
    lost = repo.reap_lost_jobs(session=session, stale_after_s=stale_after_s)
    for job_id in lost:
        audit(session, actor, "job.reap_lost", "job", job_id, stale_after_s=stale_after_s)
    return lost


# A fine-tune of the serving version needs only a few epochs on top of what it knows.
FINE_TUNE_EPOCHS = 5


@action("job.retrain_channel", role="manager")
def retrain_channel(
    *, session: Session, actor: Actor, slug: str, then_canary: bool = True, note: str = ""
) -> JobInfo:
    """Fine-tune the channel's production version with its annotated feedback in one step;
    with `then_canary`, the finished version goes through the gate into a canary."""
    from core.training.jobs import enqueue_job
    from db.repo.channels import get_channel
    from db.repo.feedback import count_training_items
    from db.repo.models import get_version

    channel = get_channel(session=session, slug=slug)
    if channel.production_version_id is None:
        raise ConflictError(f"channel {slug!r} serves no version yet: nothing to fine-tune")
    base = get_version(session=session, version_id=channel.production_version_id)
    items = count_training_items(session=session, model_id=base.model_id, unused_only=True)
    if items == 0:
        raise ConflictError(f"no annotated feedback on {base.model_name} that it has not learned")
    hp = dict(base.hyperparameters)
    hp["epochs"] = min(int(hp.get("epochs") or FINE_TUNE_EPOCHS), FINE_TUNE_EPOCHS)
    request = JobRequest(
        model_id=base.model_id, dataset_id=base.dataset_id, architecture=base.architecture,
        hyperparameters=hp, base_version_id=base.id, channel_id=channel.id,
        include_feedback=True, requested_by=actor.name,
        note=note or f"fine-tune {base.label} with {items} annotated items from {slug}",
    )  # fmt: skip
    job = enqueue_job(session=session, request=request)
    if then_canary:
        repo.mark_then_canary(session=session, job_id=job.id)
    audit(
        session, actor, "job.retrain_channel", "job", job.id, channel=slug,
        base_version_id=base.id, feedback_items=items, then_canary=then_canary, reason=note,
    )  # fmt: skip
    return job
