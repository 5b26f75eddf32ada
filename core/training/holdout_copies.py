"""Feedback on replayed holdout images in a registry older than migration 0016, found before any
retrain.

Feedback is marked as a holdout image when it arrives (`db.repo.feedback.add_feedback`), which
needs two digests: its input's (`predictions.input_digest`, logged since 0016) and the dataset's
holdout images' (`holdout_images`, stored at registration since 0016). An upgraded registry has
neither for what came before, so such items would count as "annotated, not learned" until the
retrain that leaves them out. A worker that starts fills both in first: it reads the datasets
that lack their holdout digests (only those with feedback waiting), and the stored inputs of
annotated waiting feedback that lack theirs (what the next retrain would read; an item annotated
later is read at the next start), then marks what matches. Nothing here is required for the
correctness of training (a retrain compares digests itself); it keeps the counts true meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.actions.base import Actor, audit
from db.artifact_store import artifact_store
from db.engine import session_scope
from db.errors import RegistryError
from db.repo import feedback as feedback_repo
from db.repo.datasets import get_dataset

WORKER = Actor("worker", "admin")


@dataclass(frozen=True)
class HoldoutCopies:
    """What one pass did: datasets whose holdout digests it stored, inputs it digested, inputs
    it could not read (the retrain that reads them decides), and the feedback it marked."""

    datasets: list[str]
    digested: int
    unreadable: int
    marked: list[int]


def mark_holdout_copies(log: Callable[[str], None]) -> HoldoutCopies:
    """Fill in the missing digests and mark the waiting feedback whose input is a holdout image;
    audited as `feedback.mark_holdout_copies` when it marks any."""
    datasets = _store_missing_holdout_digests(log)
    digests, unreadable = _digest_waiting_inputs()
    with session_scope() as s:
        feedback_repo.store_input_digests(session=s, digests=digests)
        marked = feedback_repo.mark_holdout_feedback(
            session=s, dataset_ids=list(datasets), prediction_ids=list(digests)
        )
        if marked:
            audit(
                s, WORKER, "feedback.mark_holdout_copies", "feedback", marked[0],
                feedback_ids=marked[:50], count=len(marked), inputs_digested=len(digests),
                reason="their inputs are holdout images: scored on, never trained on",
            )  # fmt: skip
    result = HoldoutCopies(list(datasets.values()), len(digests), unreadable, marked)
    if datasets or digests or marked:
        log(
            f"holdout copies: digests stored for {len(datasets)} datasets, {len(digests)} inputs "
            f"digested ({unreadable} unreadable), {len(marked)} feedback items marked as holdout "
            "images (they never wait for a retrain)"
        )
    return result


def _store_missing_holdout_digests(log: Callable[[str], None]) -> dict[int, str]:
    """Id -> name of the datasets whose holdout digests this pass stored."""
    from core.datasets import dataset_holdout
    from core.ml.datasets import DatasetError, load_dataset

    with session_scope() as s:
        datasets = [
            get_dataset(session=s, dataset_id=i)
            for i in feedback_repo.datasets_without_holdout_digests(session=s)
        ]
    stored: dict[int, str] = {}
    for dataset in datasets:
        try:
            data = load_dataset(dataset.source, dataset.location)
            with session_scope() as s:
                dataset_holdout(session=s, dataset=dataset, data=data)  # stores the digests
        except (DatasetError, RegistryError) as exc:
            log(f"holdout copies: cannot read dataset {dataset.name!r}: {exc}")
            continue
        stored[dataset.id] = dataset.name
    return stored


def _digest_waiting_inputs() -> tuple[dict[str, str], int]:
    """Digests of the undigested inputs of waiting feedback, taken as serving takes them (the
    image fit to its dataset's shape); and how many could not be read."""
    from core.ml.images import ImageError, decode_image, fit_to_shape, image_digest

    with session_scope() as s:
        inputs = feedback_repo.undigested_waiting_inputs(session=s)
        shapes = {
            i: tuple(get_dataset(session=s, dataset_id=i).input_shape)
            for i in {item.dataset_id for item in inputs}
        }
    store = artifact_store()
    digests: dict[str, str] = {}
    unreadable = 0
    for item in inputs:
        try:
            image = fit_to_shape(
                decode_image(store.read_bytes(item.input_path)), shapes[item.dataset_id]
            )
        except (OSError, ImageError):
            unreadable += 1
            continue
        digests[item.prediction_id] = image_digest(image)
    return digests, unreadable
