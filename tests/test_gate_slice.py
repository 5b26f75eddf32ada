"""The gate's feedback slice with two tiny real digit models: the channel's annotated items
that neither version trained on, both models run on the stored input images, per class with
intervals; a candidate clearly worse on the slice is refused once the slice is big enough."""

from __future__ import annotations

import numpy as np
import pytest

from core.actions.channels import promote_version
from core.actions.feedback import annotate_feedback, submit_feedback
from core.actions.gate import GateRefused, set_gate
from core.datasets import register_loaded_dataset
from core.gate import evaluate_gate
from core.ml.datasets import load_dataset
from core.ml.images import encode_png
from core.ml.inference import load_model
from db.engine import session_scope
from db.models import VersionTrainingItem
from db.repo.channels import ChannelSpec, create_channel
from db.repo.channels import promote_version as repo_promote
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.repo.models import create_model, register_version
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from db.settings import artifact_dir
from tests.serving_helpers import train_tiny_model

ITEMS = 40  # annotated feedback items on the channel


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    digits = load_dataset("digits")
    root = tmp_path_factory.mktemp("gate-models")
    strong = train_tiny_model(root / "strong.keras", digits, epochs=30, seed=1)
    weak = train_tiny_model(root / "weak.keras", digits, epochs=1, seed=2)
    return digits, strong, weak


def _register(s, model_id, dataset, m, training_items=()) -> int:
    return register_version(
        session=s, model_id=model_id, architecture="tiny-mlp", artifact_path=str(m.path),
        artifact_sha256=m.sha256, hyperparameters={}, dataset_id=dataset.id,
        dataset_fingerprint=dataset.fingerprint, evaluation={"accuracy": 0.9, "num_test": 300},
        history=[], framework_versions={}, device="cpu", train_seconds=1.0,
        holdout_fingerprint=dataset.holdout_fingerprint, training_items=list(training_items),
    ).id  # fmt: skip


def _annotated_feedback(s, channel_id: int, version_id: int, digits) -> list[tuple[int, int, int]]:
    """ITEMS predictions with stored images, each annotated with its true class."""
    items = []
    for i in range(ITEMS):
        path = f"inputs/web/{i}.png"
        (artifact_dir() / "inputs/web").mkdir(parents=True, exist_ok=True)
        (artifact_dir() / path).write_bytes(encode_png(digits.x[i]))
        record = PredictionRecord(new_prediction_id(), channel_id, version_id, "production",
                                  0, 0.5, np.full(10, 0.1).tolist(), 3.0, path)  # fmt: skip
        insert_predictions(session=s, records=[record])
        fb = submit_feedback(
            actor="user",
            session=s,
            feedback=FeedbackInput(prediction_id=record.id, channel_id=channel_id, rating="down"),
        )
        note = annotate_feedback(
            actor="ann",
            session=s,
            feedback_id=fb.id,
            annotation=AnnotationInput(verdict="corrected", true_class=int(digits.y[i])),
        )
        items.append((fb.id, note.id, int(digits.y[i])))
    return items


def _registry(tiny_models) -> dict:
    """web serves `strong`; `weak` trained on items 5-9, `strong` on items 0-4."""
    digits, strong, weak = tiny_models
    with session_scope() as s:
        dataset = register_loaded_dataset(session=s, name="digits", source="digits",
                                          location=None, data=digits)  # fmt: skip
        model = create_model(session=s, name="digits-mlp")
        strong_id = _register(s, model.id, dataset, strong)
        channel, _ = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", model_id=model.id)
        )
        repo_promote(session=s, slug="web", version_id=strong_id)
        items = _annotated_feedback(s, channel.id, strong_id, digits)
        for f, a, c in items[:5]:
            s.add(VersionTrainingItem(version_id=strong_id, feedback_id=f, annotation_id=a,
                                      true_class=c))  # fmt: skip
        weak_id = _register(s, model.id, dataset, weak, items[5:10])
    return {"strong": strong_id, "weak": weak_id, "items": items}


def _accuracy(model_path, digits, indices) -> float:
    model = load_model(model_path)
    predicted = model.predict(digits.x[indices].astype(np.float32), verbose=0).argmax(axis=1)
    return float(np.mean(predicted == digits.y[indices]))


def test_the_slice_leaves_out_what_either_version_trained_on(registry, tiny_models):
    digits, strong, weak = tiny_models
    built = _registry(tiny_models)
    with session_scope() as s:
        result = evaluate_gate(session=s, slug="web", version_id=built["weak"])
    sliced = result.evidence["slice"]
    expected = {f for f, _, _ in built["items"][10:]}
    assert sliced["n"] == ITEMS - 10 and set(sliced["feedback_ids"]) == expected
    kept = np.arange(10, ITEMS)
    assert sliced["candidate"]["accuracy"] == pytest.approx(_accuracy(weak.path, digits, kept))
    assert sliced["production"]["accuracy"] == pytest.approx(_accuracy(strong.path, digits, kept))
    per_class = sliced["production"]["per_class"]
    assert sum(c["n"] for c in per_class) == ITEMS - 10
    assert all(c["low"] is None or c["low"] <= c["accuracy"] <= c["high"] for c in per_class)
    assert result.evidence["holdout"]["note"] is None  # same holdout, equal figures: passes


def test_a_candidate_worse_on_the_slice_is_refused_once_the_slice_is_big_enough(
    registry, tiny_models
):
    built = _registry(tiny_models)
    with pytest.raises(GateRefused, match="feedback-slice regression: candidate"):
        promote_version(actor="mia", slug="web", version_id=built["weak"])
    set_gate(actor="mia", slug="web", min_slice=ITEMS)  # 30 items are now too few to refuse
    with session_scope() as s:
        result = evaluate_gate(session=s, slug="web", version_id=built["weak"])
    assert result.passed
    (check,) = [c for c in result.checks if c.rule == "feedback-slice regression"]
    assert check.passed is None and "fewer than the 40" in check.detail
