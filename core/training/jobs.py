"""Validated retrain requests: the one place a job is checked before it is queued.

A refusal is a `JobRequestError` whose `field_errors` name each offending form field, so every
caller (form, CLI, action) shows the messages without parsing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from sqlalchemy.orm import Session

from core.ml.catalog import ARCHITECTURE_NAMES
from core.ml.hparams import HyperparameterError, Hyperparameters
from db.errors import RegistryError
from db.models import DEVICE_REQUESTS
from db.repo import jobs as job_repo
from db.repo.jobs import JobInfo, JobRequest
from db.repo.models import get_version

MAX_NOTE_CHARS = 2000
# The key of an error that belongs to the request as a whole rather than to one field.
REQUEST = "request"


class JobRequestError(ValueError):
    """A retrain request that cannot be queued; `field_errors` maps each field to its message."""

    def __init__(self, field_errors: Mapping[str, str]) -> None:
        self.field_errors: dict[str, str] = dict(field_errors)
        super().__init__("; ".join(self.field_errors.values()))


def _base_errors(
    session: Session, base_version_id: int | None, architecture: str
) -> dict[str, str]:
    if base_version_id is None:
        return {}
    try:
        base = get_version(session=session, version_id=base_version_id)
    except RegistryError:
        return {"base_version": f"base version {base_version_id} does not exist"}
    if base.architecture != architecture:
        return {
            "architecture": f"fine-tuning keeps the base version's architecture "
            f"({base.architecture}); choose it or train from scratch"
        }
    return {}


def _request_errors(session: Session, request: JobRequest) -> dict[str, str]:
    errors: dict[str, str] = {}
    if request.architecture not in ARCHITECTURE_NAMES:
        errors["architecture"] = (
            f"unknown architecture {request.architecture!r} "
            f"(allowed: {', '.join(ARCHITECTURE_NAMES)})"
        )
    else:
        errors.update(_base_errors(session, request.base_version_id, request.architecture))
    if request.device_request not in DEVICE_REQUESTS:
        errors["device_request"] = (
            f"device must be one of {', '.join(DEVICE_REQUESTS)} (got {request.device_request!r})"
        )
    if len(request.note) > MAX_NOTE_CHARS:
        errors["note"] = f"note must be at most {MAX_NOTE_CHARS} characters"
    if not request.requested_by or not request.requested_by.strip():
        errors["requested_by"] = "say who is asking for the retrain"
    return errors


def enqueue_job(*, session: Session, request: JobRequest) -> JobInfo:
    """Validate a retrain request and queue it; raises JobRequestError (every bad field at
    once) and writes nothing."""
    errors: dict[str, str] = {}
    try:
        hp = Hyperparameters.from_dict(request.hyperparameters)
    except HyperparameterError as exc:
        errors.update(exc.field_errors)
    errors.update(_request_errors(session, request))
    if errors:
        raise JobRequestError(errors)
    clean = replace(
        request, hyperparameters=hp.to_dict(), requested_by=request.requested_by.strip(),
        note=request.note.strip(),
    )  # fmt: skip
    try:
        return job_repo.insert_job(session=session, request=clean)
    except RegistryError as exc:
        raise JobRequestError({REQUEST: str(exc)}) from exc
