"""Model actions: name a new model (its versions are registered by the training worker)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from db.repo import models as repo
from db.repo.models import ModelInfo


@action("model.create", role="manager")
def create_model(*, session: Session, actor: Actor, name: str, description: str = "") -> ModelInfo:
    """Create a named model that retrains add versions to."""
    info = repo.create_model(session=session, name=name, description=description)
    audit(
        session, actor, "model.create", "model", info.id,
        after={"name": info.name, "description": info.description},
    )  # fmt: skip
    return info


def ensure_model(*, actor: Actor, session: Session, name: str) -> ModelInfo:
    """The model called `name`, created through `create_model` when it does not exist yet."""
    existing = repo.find_model(session=session, name=name.strip())
    if existing is not None:
        return existing
    return create_model(session=session, actor=actor, name=name)
