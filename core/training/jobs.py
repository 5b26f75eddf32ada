"""Validated retrain requests: the one place a job is checked before it is queued.

A refusal is a `JobRequestError` whose `field_errors` name each offending form field, so every
caller (form, CLI, action) shows the messages without parsing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from core.ml.catalog import ARCHITECTURE_NAMES
from core.ml.hparams import HyperparameterError, Hyperparameters
from db.errors import RegistryError
from db.models import DEVICE_REQUESTS
from db.repo import jobs as job_repo
from db.repo.jobs import JobInfo
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


def _request_errors(
    session: Session, architecture: str, base_version_id: int | None, device_request: str,
    requested_by: str, note: str,
) -> dict[str, str]:  # fmt: skip
    errors: dict[str, str] = {}
    if architecture not in ARCHITECTURE_NAMES:
        errors["architecture"] = (
            f"unknown architecture {architecture!r} (allowed: {', '.join(ARCHITECTURE_NAMES)})"
        )
    else:
        errors.update(_base_errors(session, base_version_id, architecture))
    if device_request not in DEVICE_REQUESTS:
        errors["device_request"] = (
            f"device must be one of {', '.join(DEVICE_REQUESTS)} (got {device_request!r})"
        )
    if len(note) > MAX_NOTE_CHARS:
        errors["note"] = f"note must be at most {MAX_NOTE_CHARS} characters"
    if not requested_by or not requested_by.strip():
        errors["requested_by"] = "say who is asking for the retrain"
    return errors


def enqueue_job(
    *,
    session: Session,
    model_id: int,
    dataset_id: int,
    architecture: str,
    hyperparameters: dict[str, Any],
    base_version_id: int | None = None,
    channel_id: int | None = None,
    include_feedback: bool = False,
    device_request: str = "auto",
    requested_by: str,
    note: str = "",
) -> JobInfo:
    """Validate a retrain request and queue it; raises JobRequestError (every bad field at
    once) and writes nothing."""
    errors: dict[str, str] = {}
    try:
        hp = Hyperparameters.from_dict(hyperparameters)
    except HyperparameterError as exc:
        errors.update(exc.field_errors)
    errors.update(
        _request_errors(session, architecture, base_version_id, device_request, requested_by, note)
    )
    if errors:
        raise JobRequestError(errors)
    try:
        return job_repo.insert_job(
            session=session, model_id=model_id, dataset_id=dataset_id, architecture=architecture,
            hyperparameters=hp.to_dict(), base_version_id=base_version_id, channel_id=channel_id,
            include_feedback=include_feedback, device_request=device_request,
            requested_by=requested_by.strip(), note=note.strip(),
        )  # fmt: skip
    except RegistryError as exc:
        raise JobRequestError({REQUEST: str(exc)}) from exc
