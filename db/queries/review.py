"""The feedback review queue: filtered, sorted and paged in SQL, and one item with its context."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from db.models import Annotation, Channel, Dataset, Feedback, Model, ModelVersion, Prediction
from db.queries.dates import within_days
from db.repo.feedback import FeedbackFields
from db.repo.rows import info_of

REVIEW_SORTS = ("newest", "least confident", "disagreement first")


@dataclass(frozen=True)
class ReviewFilter:
    channel_id: int | None = None
    rating: str | None = None
    status: str | None = "pending"
    predicted_class: int | None = None
    claimed_class: int | None = None
    version_id: int | None = None
    created_from: date | None = None
    created_to: date | None = None


@dataclass(frozen=True)
class ReviewRow(FeedbackFields):
    id: int
    channel_slug: str
    version_label: str
    created_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    """Everything the reviewer needs to judge one feedback item."""

    row: ReviewRow
    version_id: int
    model_id: int
    prediction_id: str
    probabilities: list[float]
    input_path: str | None
    class_names: list[str]
    current_verdict: str | None = None
    current_true_class: int | None = None
    current_tags: list[str] = field(default_factory=list)
    current_note: str = ""
    current_author: str | None = None
    # The input is one of the dataset's holdout images: annotated, it is scored on, never learned.
    holdout_image: bool = False


def _filtered(query: Select, f: ReviewFilter) -> Select:
    equal = {
        Feedback.channel_id: f.channel_id,
        Feedback.rating: f.rating,
        Feedback.review_status: f.status,
        Feedback.predicted_class: f.predicted_class,
        Feedback.claimed_class: f.claimed_class,
        Feedback.version_id: f.version_id,
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(column == value)
    return within_days(query, Feedback.created_at, f.created_from, f.created_to)


def _ordering(sort: str) -> tuple:
    if sort == "least confident":
        return (Feedback.confidence.asc(), Feedback.id.desc())
    if sort == "disagreement first":
        # The user says "wrong" and names another class, most confident model answers first.
        disagrees = and_(
            Feedback.rating == "down",
            Feedback.claimed_class.is_not(None),
            Feedback.claimed_class != Feedback.predicted_class,
        )
        rank = case((disagrees, 0), (Feedback.rating == "down", 1), else_=2)
        return (rank, Feedback.confidence.desc(), Feedback.id.desc())
    return (Feedback.created_at.desc(), Feedback.id.desc())


def _labels(session: Session, feedback_rows: list[Feedback]) -> tuple[dict, dict]:
    channel_ids = {r.channel_id for r in feedback_rows}
    version_ids = {r.version_id for r in feedback_rows}
    slugs = dict(
        session.execute(select(Channel.id, Channel.slug).where(Channel.id.in_(channel_ids)))
        .tuples()
        .all()
    )
    versions = {
        vid: f"{name} v{number}"
        for vid, name, number in session.execute(
            select(ModelVersion.id, Model.name, ModelVersion.version)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(ModelVersion.id.in_(version_ids))
        )
    }
    return slugs, versions


def _rows(session: Session, feedback_rows: list[Feedback]) -> list[ReviewRow]:
    slugs, versions = _labels(session, feedback_rows)
    return [
        info_of(
            ReviewRow,
            r,
            channel_slug=slugs.get(r.channel_id, "?"),
            version_label=versions.get(r.version_id, "?"),
        )
        for r in feedback_rows
    ]


def review_page(
    *,
    session: Session,
    filters: ReviewFilter = ReviewFilter(),
    sort: str = "newest",
    page: int = 0,
    page_size: int = 20,
) -> tuple[list[ReviewRow], int]:
    """One page of the queue and the number of items matching the filters."""
    total = session.scalar(_filtered(select(func.count()).select_from(Feedback), filters))
    query = _filtered(select(Feedback), filters).order_by(*_ordering(sort))
    rows = session.scalars(query.limit(page_size).offset(page * page_size)).all()
    return _rows(session, list(rows)), total or 0


def review_ids(
    *, session: Session, filters: ReviewFilter, sort: str = "newest", limit: int = 1000
) -> list[int]:
    """Ids of the first `limit` items of the filtered queue (for bulk verdicts)."""
    query = _filtered(select(Feedback.id), filters).order_by(*_ordering(sort)).limit(limit)
    return list(session.scalars(query))


def review_item(*, session: Session, feedback_id: int) -> ReviewItem | None:
    """The feedback item with its prediction, class names and current annotation."""
    return review_items(session=session, feedback_ids=[feedback_id]).get(feedback_id)


# Ids per IN list (SQLite allows 32,766 bound parameters; a bulk verdict takes 5,000 items).
IDS_PER_QUERY = 1000


def review_items(*, session: Session, feedback_ids: list[int]) -> dict[int, ReviewItem]:
    """`review_item` of many items in a few queries (a bulk verdict reads hundreds); an id
    that does not exist is left out."""
    found, current = [], {}
    for i in range(0, len(feedback_ids), IDS_PER_QUERY):
        chunk = feedback_ids[i : i + IDS_PER_QUERY]
        found += session.execute(
            select(
                Feedback,
                Prediction.probabilities,
                Prediction.input_path,
                Dataset.class_names,
                ModelVersion.model_id,
            )
            .join(Prediction, Prediction.id == Feedback.prediction_id)
            .join(ModelVersion, ModelVersion.id == Feedback.version_id)
            .join(Dataset, Dataset.id == ModelVersion.dataset_id)
            .where(Feedback.id.in_(chunk))
        ).all()
        current.update(
            (a.feedback_id, a)
            for a in session.scalars(
                select(Annotation).where(
                    Annotation.feedback_id.in_(chunk), Annotation.is_current.is_(True)
                )
            )
        )
    rows = _rows(session, [fb for fb, *_ in found])
    items = {}
    for row, (fb, probabilities, input_path, class_names, model_id) in zip(
        rows, found, strict=True
    ):
        a = current.get(fb.id)
        items[fb.id] = ReviewItem(
            row,
            fb.version_id,
            model_id,
            fb.prediction_id,
            [float(p) for p in probabilities or []],
            input_path,
            [str(c) for c in class_names or []],
            a.verdict if a else None,
            a.true_class if a else None,
            list(a.tags or []) if a else [],
            a.note if a else "",
            a.author if a else None,
            fb.holdout_image,
        )
    return items


def class_names_by_channel(*, session: Session) -> dict[int, list[str]]:
    """Class names of each channel's dataset (for the class filters)."""
    rows = session.execute(
        select(Channel.id, Dataset.class_names).join(Dataset, Dataset.id == Channel.dataset_id)
    )
    return {channel_id: [str(c) for c in names or []] for channel_id, names in rows}


@dataclass(frozen=True)
class Suggestion:
    verdict: str
    true_class: int | None
    reason: str


def suggest_verdict(item: ReviewItem) -> Suggestion:
    """A starting verdict from the model's own probabilities (the reviewer decides)."""
    row, probs = item.row, item.probabilities
    name = lambda i: item.class_names[i] if 0 <= i < len(item.class_names) else str(i)  # noqa: E731
    if row.rating == "up":
        return Suggestion("confirmed", row.predicted_class, "the user agrees with the prediction")
    ranked = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else None
    if row.claimed_class is None:
        if runner_up is None:
            return Suggestion("rejected", None, "the user names no class and there is no other")
        return Suggestion(
            "corrected",
            runner_up,
            f"the user names no class; the model's second choice is "
            f"{name(runner_up)} ({probs[runner_up]:.0%})",
        )
    claimed_p = probs[row.claimed_class] if row.claimed_class < len(probs) else 0.0
    if row.claimed_class == runner_up or claimed_p >= 0.05:
        return Suggestion(
            "confirmed",
            row.claimed_class,
            f"the model gives the user's class {name(row.claimed_class)} "
            f"{claimed_p:.0%}: a plausible mistake",
        )
    if row.confidence >= 0.95:
        return Suggestion(
            "rejected",
            None,
            f"the model is {row.confidence:.0%} sure and gives the user's class only "
            f"{claimed_p:.1%}: possibly noise",
        )
    return Suggestion("confirmed", row.claimed_class, "the model is unsure; the user may be right")
