"""Validated retrain requests: the one place a job is checked before it is queued."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.ml.catalog import ARCHITECTURE_DESCRIPTIONS
from core.ml.hparams import HyperparameterError, Hyperparameters
from db.repo import jobs as job_repo
from db.errors import RegistryError
from db.repo.jobs import JobInfo
from db.repo.models import get_version

MAX_NOTE_CHARS = 2000


class JobRequestError(ValueError):
    """A retrain request that cannot be queued; `field` names the offending form field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def architecture_names() -> list[str]:
    return list(ARCHITECTURE_DESCRIPTIONS)


def _field_of(message: str) -> str | None:
    for name in Hyperparameters.__dataclass_fields__:
        if message.startswith(name):
            return name
    return None


def validate_hyperparameters(values: dict[str, Any]) -> Hyperparameters:
    try:
        return Hyperparameters.from_dict(values)
    except HyperparameterError as exc:
        raise JobRequestError(str(exc), _field_of(str(exc))) from exc


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
    """Validate a retrain request and queue it; raises JobRequestError and writes nothing."""
    hp = validate_hyperparameters(hyperparameters)
    if architecture not in architecture_names():
        raise JobRequestError(
            f"unknown architecture {architecture!r} (allowed: {', '.join(architecture_names())})",
            "architecture",
        )
    if base_version_id is not None:
        try:
            base = get_version(session=session, version_id=base_version_id)
        except RegistryError as exc:
            raise JobRequestError(
                f"base version {base_version_id} does not exist", "base_version"
            ) from exc
        if base.architecture != architecture:
            raise JobRequestError(
                f"fine-tuning keeps the base version's architecture ({base.architecture}); "
                "choose it or train from scratch",
                "architecture",
            )
    if len(note) > MAX_NOTE_CHARS:
        raise JobRequestError(f"note must be at most {MAX_NOTE_CHARS} characters", "note")
    if not requested_by or not requested_by.strip():
        raise JobRequestError("say who is asking for the retrain", "requested_by")
    try:
        return job_repo.insert_job(
            session=session,
            model_id=model_id,
            dataset_id=dataset_id,
            architecture=architecture,
            hyperparameters=hp.to_dict(),
            base_version_id=base_version_id,
            channel_id=channel_id,
            include_feedback=include_feedback,
            device_request=device_request,
            requested_by=requested_by.strip(),
            note=note.strip(),
        )
    except RegistryError as exc:
        raise JobRequestError(str(exc)) from exc
