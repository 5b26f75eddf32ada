"""User feedback on predictions and the managers' annotations that turn it into training data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from numbers import Integral

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from db.errors import ConflictError, NotFoundError, RegistryError
from db.models import (
    RATINGS,
    VERDICTS,
    Annotation,
    Dataset,
    Feedback,
    HoldoutImage,
    ModelVersion,
    Prediction,
)
from db.repo.lookup import get_row
from db.repo.rollups import RollupDelta, add_to_rollups
from db.repo.rows import info_of
from db.text import check_text, normalize_newlines

MAX_COMMENT_CHARS = 2000
MAX_TAGS = 20
# One end user's verdict per prediction: a repeat is refused (409), so one client cannot weigh
# a prediction's thumbs or flood the review queue with copies.
MAX_FEEDBACK_PER_PREDICTION = 1
# An annotated item waits for a retrain until a version learns it or a retrain leaves it out;
# one whose input is a holdout image (scored on, never trained on) never waits.
WAITING_FOR_A_RETRAIN = (
    Feedback.used_in_version_id.is_(None),
    Feedback.left_out_by_version_id.is_(None),
    Feedback.holdout_image.is_(False),
)


@dataclass(frozen=True)
class FeedbackFields:
    """What a feedback item says, shared by FeedbackInfo and the review queue's rows (their own
    fields follow these: build either by keyword)."""

    predicted_class: int
    confidence: float
    rating: str
    claimed_class: int | None
    comment: str
    review_status: str


@dataclass(frozen=True)
class FeedbackInfo(FeedbackFields):
    id: int
    prediction_id: str
    channel_id: int
    version_id: int
    used_in_version_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class AnnotationInfo:
    id: int
    feedback_id: int
    verdict: str
    true_class: int | None
    tags: list[str]
    note: str
    author: str
    is_current: bool
    created_at: datetime


@dataclass(frozen=True)
class TrainingItem:
    feedback_id: int
    annotation_id: int
    true_class: int
    input_path: str


def _feedback_info(r: Feedback) -> FeedbackInfo:
    return info_of(FeedbackInfo, r)


@dataclass(frozen=True)
class FeedbackInput:
    """An end user's verdict as given: on prediction `prediction_id` of channel `channel_id`,
    `claimed_class` (the class they say is right) bounded by `num_classes` when known."""

    prediction_id: str
    channel_id: int
    rating: str
    claimed_class: int | None = None
    comment: str = ""
    num_classes: int | None = None


def add_feedback(*, session: Session, feedback: FeedbackInput) -> FeedbackInfo:
    """Record an end user's verdict on a prediction made on `feedback.channel_id` (another
    channel's prediction is refused as not found, so ids of other channels are not disclosed)."""
    if not isinstance(feedback, FeedbackInput):
        raise RegistryError(f"feedback must be a FeedbackInput (got {type(feedback).__name__})")
    prediction_id, channel_id, rating = feedback.prediction_id, feedback.channel_id, feedback.rating
    claimed_class = feedback.claimed_class
    comment = _valid_feedback_fields(rating, claimed_class, feedback.comment, feedback.num_classes)
    # FOR UPDATE queues feedback on one prediction on PostgreSQL; on SQLite the insert takes
    # the one write lock. Either way the count after the insert sees every earlier feedback.
    prediction = session.get(Prediction, prediction_id, with_for_update=True)
    if prediction is None or prediction.channel_id != channel_id:
        raise NotFoundError(f"prediction {prediction_id!r} does not exist on this channel")
    row = Feedback(
        prediction_id=prediction_id, channel_id=channel_id, version_id=prediction.version_id,
        predicted_class=prediction.predicted_class, confidence=prediction.confidence,
        rating=rating, claimed_class=claimed_class, comment=comment,
        holdout_image=_is_a_holdout_image(session, prediction),
    )  # fmt: skip
    session.add(row)
    session.flush()  # the insert first: it takes SQLite's write lock before rollups are read
    given = session.scalar(
        select(func.count()).select_from(Feedback).where(Feedback.prediction_id == prediction_id)
    )
    if given > MAX_FEEDBACK_PER_PREDICTION:
        session.delete(row)  # gone even from a caller that goes on with this session
        session.flush()
        raise ConflictError(f"prediction {prediction_id!r} already has its feedback")
    add_to_rollups(session=session, deltas=[_rollup_delta(prediction, {f"thumbs_{rating}": 1})])
    return _feedback_info(row)


def _is_a_holdout_image(session: Session, prediction: Prediction) -> bool:
    """Whether the prediction's input is one of its version's dataset's holdout images (False
    when unknown: no digest, logged before 0016, or the holdout's digests not stored yet; the
    retrain that leaves such an item out records it then)."""
    if prediction.input_digest is None:
        return False
    dataset = select(ModelVersion.dataset_id).where(ModelVersion.id == prediction.version_id)
    return bool(
        session.scalar(
            select(
                exists().where(
                    HoldoutImage.dataset_id == dataset.scalar_subquery(),
                    HoldoutImage.digest == prediction.input_digest,
                )
            )
        )
    )


def _valid_feedback_fields(
    rating: str, claimed_class: int | None, comment: str, num_classes: int | None
) -> str:
    """The comment to store (newlines normalized), or a RegistryError naming what is wrong."""
    if rating not in RATINGS:
        raise RegistryError(f"rating must be 'up' or 'down' (got {rating!r})")
    if claimed_class is not None:
        if isinstance(claimed_class, bool) or not isinstance(claimed_class, Integral):
            raise RegistryError(f"claimed class must be a class index (got {claimed_class!r})")
        if claimed_class < 0 or (num_classes is not None and claimed_class >= num_classes):
            raise RegistryError(
                f"claimed class must be between 0 and {(num_classes or 1) - 1} "
                f"(got {claimed_class})"
            )
    comment = normalize_newlines(comment)
    if len(comment) > MAX_COMMENT_CHARS:
        raise RegistryError(f"comment must be at most {MAX_COMMENT_CHARS} characters")
    problem = check_text("comment", comment)
    if problem:
        raise RegistryError(problem)
    return comment


def _outcome(predicted_class: int, true_class: int | None) -> str | None:
    """What an annotation says of the prediction: right, wrong, or nothing (rejected)."""
    if true_class is None:
        return None
    return "annotated_right" if true_class == predicted_class else "annotated_wrong"


def _rollup_delta(prediction: Prediction, counts: dict[str, int]) -> RollupDelta:
    """Feedback and verdicts count in the bucket of the prediction they are about."""
    return RollupDelta(
        prediction.channel_id, prediction.version_id, prediction.arm, prediction.created_at,
        counts=counts,
    )  # fmt: skip


def get_feedback(*, session: Session, feedback_id: int) -> FeedbackInfo:
    return _feedback_info(get_row(session, Feedback, feedback_id, "feedback"))


def _resolve_true_class(row: Feedback, verdict: str, true_class: int | None) -> int | None:
    if verdict == "rejected":
        return None
    if verdict == "corrected":
        if true_class is None:
            raise RegistryError("a correction needs the true class")
        return true_class
    # Confirmed: the user is right. Thumbs-up confirms the prediction; thumbs-down its claim.
    if row.rating == "up":
        return row.predicted_class
    if row.claimed_class is None:
        raise RegistryError(
            "the user said the prediction is wrong but named no class: use Correct and give it"
        )
    return row.claimed_class


@dataclass(frozen=True)
class AnnotationInput:
    """An annotator's verdict as given: `true_class` only for a correction (a confirmation takes
    the user's class), `num_classes` bounds the class when known."""

    verdict: str
    true_class: int | None = None
    tags: list[str] | None = None
    note: str = ""
    num_classes: int | None = None


def annotate(
    *,
    session: Session,
    feedback_id: int,
    author: str,
    annotation: AnnotationInput,
    rollups: list[RollupDelta] | None = None,
) -> AnnotationInfo:
    """Store a verdict; an earlier one stays in the history but is no longer current.
    `rollups`: a list that takes the verdict's change to the rollups, for the caller to add
    with those of other verdicts (`add_to_rollups` once: a bulk verdict on 500 items spent
    half its time on one rollup write each); without it, the change is written now."""
    if not isinstance(annotation, AnnotationInput):
        raise RegistryError(
            f"a verdict must be an AnnotationInput (got {type(annotation).__name__})"
        )
    verdict, true_class, note = annotation.verdict, annotation.true_class, annotation.note
    num_classes = annotation.num_classes
    if verdict not in VERDICTS:
        raise RegistryError(f"verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})")
    if not author or not author.strip():
        raise RegistryError("an annotation needs an author")
    row = get_row(session, Feedback, feedback_id, "feedback")
    resolved = _resolve_true_class(row, verdict, true_class)
    if resolved is not None and (
        resolved < 0 or (num_classes is not None and resolved >= num_classes)
    ):
        raise RegistryError(
            f"true class must be between 0 and {(num_classes or 1) - 1} (got {resolved})"
        )
    clean_tags = sorted({t.strip() for t in (annotation.tags or []) if t.strip()})[:MAX_TAGS]
    note = normalize_newlines(note)
    for field, text in [("note", note), *(("tag", t) for t in clean_tags)]:
        problem = check_text(field, text)
        if problem:
            raise RegistryError(problem)
    previous = session.scalar(
        select(Annotation).where(
            Annotation.feedback_id == feedback_id, Annotation.is_current.is_(True)
        )
    )
    if previous is not None:
        previous.is_current = False
        session.flush()
    if previous is None or previous.true_class != resolved:
        row.used_in_version_id = None  # a new label has not been trained on yet
    stored = Annotation(
        feedback_id=feedback_id, verdict=verdict, true_class=resolved, tags=clean_tags,
        note=note.strip(), author=author.strip(), is_current=True,
    )  # fmt: skip
    session.add(stored)
    row.review_status = verdict
    session.flush()
    before = _outcome(row.predicted_class, previous.true_class if previous else None)
    after = _outcome(row.predicted_class, resolved)
    if before != after:
        counts = {name: d for name, d in ((before, -1), (after, 1)) if name is not None}
        delta = _rollup_delta(session.get(Prediction, row.prediction_id), counts)
        if rollups is None:
            add_to_rollups(session=session, deltas=[delta])
        else:
            rollups.append(delta)
    return _annotation_info(stored)


def _annotation_info(a: Annotation) -> AnnotationInfo:
    return AnnotationInfo(
        a.id, a.feedback_id, a.verdict, a.true_class, list(a.tags or []), a.note, a.author,
        a.is_current, a.created_at,
    )  # fmt: skip


def annotation_history(*, session: Session, feedback_id: int) -> list[AnnotationInfo]:
    rows = session.scalars(
        select(Annotation).where(Annotation.feedback_id == feedback_id).order_by(Annotation.id)
    )
    return [_annotation_info(a) for a in rows]


def _training_query(model_id: int):
    return (
        select(Feedback.id, Annotation.id, Annotation.true_class, Prediction.input_path)
        .join(Annotation, (Annotation.feedback_id == Feedback.id) & Annotation.is_current.is_(True))
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .join(ModelVersion, ModelVersion.id == Feedback.version_id)
        .where(
            ModelVersion.model_id == model_id,
            Annotation.verdict.in_(("confirmed", "corrected")),
            Prediction.input_path.is_not(None),
        )
    )


def training_items(*, session: Session, model_id: int) -> list[TrainingItem]:
    """Every confirmed or corrected feedback item on predictions of `model_id`'s versions."""
    rows = session.execute(_training_query(model_id).order_by(Feedback.id))
    return [TrainingItem(f, a, c, p) for f, a, c, p in rows]


def count_training_items(
    *, session: Session, model_id: int | None = None, unused_only: bool = False
) -> int:
    """How many annotated items a retrain would add, holdout images never among them
    (`unused_only`: those not yet trained on, nor left out by a retrain)."""
    query = (
        select(func.count())
        .select_from(Feedback)
        .where(
            Feedback.review_status.in_(("confirmed", "corrected")),
            Feedback.holdout_image.is_(False),
        )
    )
    if unused_only:
        query = query.where(*WAITING_FOR_A_RETRAIN)
    if model_id is not None:
        query = query.join(ModelVersion, ModelVersion.id == Feedback.version_id).where(
            ModelVersion.model_id == model_id
        )
    return session.scalar(query) or 0


def mark_used(
    *, session: Session, feedback_ids: list[int], version_id: int, left_out: Sequence[int] = ()
) -> None:
    """`version_id` learned `feedback_ids`, and left out the items `left_out` (their images are
    holdout images, or no retrain can learn them: input gone or unreadable, class unknown):
    neither waits for a retrain any more."""
    if not feedback_ids and not left_out:
        return
    if session.get(ModelVersion, version_id) is None:
        raise ConflictError(f"version {version_id} does not exist")
    _set_on_feedback(session, feedback_ids, used_in_version_id=version_id,
                     left_out_by_version_id=None)  # fmt: skip
    _set_on_feedback(session, left_out, left_out_by_version_id=version_id)


# Rows per statement (ids in one `IN (…)` list, rows in one bulk update): well under every
# database's limit on bound parameters.
BATCH_ROWS = 500


def _batches(items: Sequence) -> Iterator[Sequence]:
    for start in range(0, len(items), BATCH_ROWS):
        yield items[start : start + BATCH_ROWS]


def _set_on_feedback(session: Session, feedback_ids: Sequence[int], **values: object) -> None:
    """Set `values` on the feedback rows `feedback_ids`."""
    for chunk in _batches(list(feedback_ids)):
        session.execute(update(Feedback).where(Feedback.id.in_(chunk)).values(**values))


def list_pending_feedback_ids(*, session: Session, limit: int = 50) -> list[int]:
    """Oldest feedback still waiting for a verdict."""
    query = (
        select(Feedback.id)
        .where(Feedback.review_status == "pending")
        .order_by(Feedback.created_at, Feedback.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class UndigestedInput:
    """The stored input of a prediction whose digest is unknown (logged before migration 0016),
    with its version's dataset (whose image shape the digest is taken at)."""

    prediction_id: str
    input_path: str
    dataset_id: int


def undigested_waiting_inputs(*, session: Session) -> list[UndigestedInput]:
    """The inputs of annotated feedback still waiting for a retrain whose digests are unknown:
    the inputs the next retrain would read (so reading them first costs no more than it)."""
    rows = session.execute(
        select(Prediction.id, Prediction.input_path, ModelVersion.dataset_id)
        .join(Feedback, Feedback.prediction_id == Prediction.id)
        .join(ModelVersion, ModelVersion.id == Feedback.version_id)
        .where(
            *WAITING_FOR_A_RETRAIN,
            Feedback.review_status.in_(("confirmed", "corrected")),
            Prediction.input_digest.is_(None),
            Prediction.input_path.is_not(None),
        )
        .order_by(Prediction.id)
    )
    return [UndigestedInput(*row) for row in rows]


def store_input_digests(*, session: Session, digests: dict[str, str]) -> None:
    """Record the digests of stored inputs (prediction id -> digest) found after the fact."""
    rows = [{"id": pid, "input_digest": digest} for pid, digest in digests.items()]
    for chunk in _batches(rows):
        session.execute(update(Prediction), chunk)


def mark_holdout_feedback(
    *, session: Session, dataset_ids: Sequence[int] = (), prediction_ids: Sequence[str] = ()
) -> list[int]:
    """Mark the feedback still waiting for a retrain whose input is, by its digest, one of its
    version's dataset's holdout images (what `add_feedback` does when both digests are known on
    arrival), among the feedback on `dataset_ids`' versions and on `prediction_ids`: where a
    digest has just become known. Returns the ids marked."""
    matches = (
        select(Feedback.id)
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .join(ModelVersion, ModelVersion.id == Feedback.version_id)
        .join(
            HoldoutImage,
            (HoldoutImage.dataset_id == ModelVersion.dataset_id)
            & (HoldoutImage.digest == Prediction.input_digest),
        )
        .where(*WAITING_FOR_A_RETRAIN)
    )
    ids: set[int] = set()
    if dataset_ids:
        ids.update(session.scalars(matches.where(ModelVersion.dataset_id.in_(dataset_ids))))
    for chunk in _batches(list(prediction_ids)):
        ids.update(session.scalars(matches.where(Prediction.id.in_(chunk))))
    marked = sorted(ids)
    _set_on_feedback(session, marked, holdout_image=True)
    return marked


def datasets_without_holdout_digests(*, session: Session) -> list[int]:
    """The datasets whose holdout images' digests are not stored yet (registered before
    migration 0016, and no training job has read them since) and that have feedback waiting
    for a retrain. Once every dataset has its digests, this reads no feedback at all."""
    waiting = (
        select(Feedback.id)
        .join(ModelVersion, ModelVersion.id == Feedback.version_id)
        .where(ModelVersion.dataset_id == Dataset.id, *WAITING_FOR_A_RETRAIN)
        .exists()
    )
    stored = exists().where(HoldoutImage.dataset_id == Dataset.id)
    return list(session.scalars(select(Dataset.id).where(~stored, waiting).order_by(Dataset.id)))
