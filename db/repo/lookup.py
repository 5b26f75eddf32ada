"""Look a row up or say it does not exist: the one wording of every repository's NotFoundError."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from db.errors import NotFoundError

T = TypeVar("T")


def must_exist(found: T | None, what: str) -> T:
    """`found`, or NotFoundError "`what` does not exist" when the lookup found nothing
    (`what` names the row as the message shows it: "job 7", "channel 'web'")."""
    if found is None:
        raise NotFoundError(f"{what} does not exist")
    return found


def get_row(session: Session, model: type[T], row_id: Any, noun: str) -> T:
    """The `model` row whose primary key is `row_id`, or NotFoundError
    "`noun` `row_id` does not exist"."""
    return must_exist(session.get(model, row_id), f"{noun} {row_id}")
