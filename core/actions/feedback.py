"""Feedback actions: an end user's verdict on a prediction, and annotators' verdicts on it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from db.errors import RegistryError
from db.models import VERDICTS
from db.repo import feedback as repo
from db.repo.feedback import AnnotationInfo, AnnotationInput, FeedbackInfo, FeedbackInput
from db.repo.rollups import add_to_rollups

MAX_BULK_ITEMS = 5000


@dataclass(frozen=True)
class BulkResult:
    """What a bulk verdict did: the items it stored a verdict on, and why it skipped others."""

    applied: list[int]
    skipped: list[str]


@action("feedback.submit", role="viewer")
def submit_feedback(*, session: Session, actor: Actor, feedback: FeedbackInput) -> FeedbackInfo:
    """Record an end user's thumbs up/down (and the class they say is right) on a prediction."""
    info = repo.add_feedback(session=session, feedback=feedback)
    audit(
        session, actor, "feedback.submit", "feedback", info.id,
        prediction_id=feedback.prediction_id, rating=feedback.rating,
        claimed_class=feedback.claimed_class,
    )  # fmt: skip
    return info


def _current_verdict(session: Session, feedback_id: int) -> dict[str, object] | None:
    history = repo.annotation_history(session=session, feedback_id=feedback_id)
    current = [a for a in history if a.is_current]
    if not current:
        return None
    return {"verdict": current[0].verdict, "true_class": current[0].true_class}


@action("feedback.annotate", role="annotator")
def annotate_feedback(
    *, session: Session, actor: Actor, feedback_id: int, annotation: AnnotationInput
) -> AnnotationInfo:
    """Store a verdict (confirmed / corrected / rejected) on one feedback item."""
    before = _current_verdict(session, feedback_id)
    info = repo.annotate(
        session=session, feedback_id=feedback_id, author=actor.name, annotation=annotation
    )
    audit(
        session, actor, "feedback.annotate", "feedback", feedback_id,
        before=before, after={"verdict": info.verdict, "true_class": info.true_class},
        reason=info.note,
    )  # fmt: skip
    return info


@action("feedback.bulk_annotate", role="annotator")
def bulk_annotate(
    *, session: Session, actor: Actor, feedback_ids: list[int], annotation: AnnotationInput
) -> BulkResult:
    """Apply one verdict to many items in one transaction; items it cannot apply to are
    skipped with the reason (one audit row lists the items it applied to)."""
    if annotation.verdict not in VERDICTS:
        raise RegistryError(
            f"verdict must be one of {', '.join(VERDICTS)} (got {annotation.verdict!r})"
        )
    if not feedback_ids:
        raise RegistryError("a bulk verdict needs at least one feedback item")
    if len(feedback_ids) > MAX_BULK_ITEMS:
        raise RegistryError(f"a bulk verdict takes at most {MAX_BULK_ITEMS} items at once")
    applied, skipped, rollups = [], [], []
    for feedback_id in dict.fromkeys(feedback_ids):
        try:
            repo.annotate(
                session=session, feedback_id=feedback_id, author=actor.name,
                annotation=annotation, rollups=rollups,
            )  # fmt: skip
            applied.append(feedback_id)
        except RegistryError as exc:
            skipped.append(f"#{feedback_id}: {exc}")
    add_to_rollups(session=session, deltas=rollups)
    audit(
        session, actor, "feedback.bulk_annotate", "feedback", f"{len(applied)} items",
        feedback_ids=applied, verdict=annotation.verdict, true_class=annotation.true_class,
        skipped=len(skipped), reason=annotation.note.strip(),
    )  # fmt: skip
    return BulkResult(applied, skipped)


@action("feedback.accept_suggestions", role="annotator")
def accept_suggestions(
    *, session: Session, actor: Actor, feedback_ids: list[int], note: str = ""
) -> BulkResult:
    """Store each item's own suggested verdict and class (from the user's claim and the model's
    probabilities) — not one class for all; items without a usable suggestion are skipped."""
    from db.queries.review import review_items, suggest_verdict

    if not feedback_ids:
        raise RegistryError("accepting suggestions needs at least one feedback item")
    if len(feedback_ids) > MAX_BULK_ITEMS:
        raise RegistryError(f"accept at most {MAX_BULK_ITEMS} suggestions at once")
    applied, skipped, verdicts, rollups = [], [], {}, []
    wanted = list(dict.fromkeys(feedback_ids))
    items = review_items(session=session, feedback_ids=wanted)
    for feedback_id in wanted:
        item = items.get(feedback_id)
        if item is None:
            skipped.append(f"#{feedback_id}: does not exist")
            continue
        suggestion = suggest_verdict(item)
        annotation = AnnotationInput(
            suggestion.verdict, suggestion.true_class,
            note=note or f"suggestion accepted: {suggestion.reason}",
            num_classes=len(item.class_names) or None,
        )  # fmt: skip
        repo.annotate(
            session=session, feedback_id=feedback_id, author=actor.name, annotation=annotation,
            rollups=rollups,
        )  # fmt: skip
        applied.append(feedback_id)
        verdicts[suggestion.verdict] = verdicts.get(suggestion.verdict, 0) + 1
    add_to_rollups(session=session, deltas=rollups)
    audit(
        session, actor, "feedback.accept_suggestions", "feedback", f"{len(applied)} items",
        feedback_ids=applied, verdicts=verdicts, skipped=len(skipped), reason=note.strip(),
    )  # fmt: skip
    return BulkResult(applied, skipped)
