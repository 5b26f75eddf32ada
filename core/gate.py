"""The promotion gate: before a version becomes a channel's production or canary, compare it
with production on the dataset holdout (only when both were scored on the same one) and on the
channel's annotated-feedback slice that neither trained on, per class with Wilson intervals,
and judge the result by the channel's rules (floor, largest regression, minimum slice).

Scoring the slice runs both models on the stored input images, so Keras is imported only when a
slice is scored; pages import this module lazily, when a manager asks for the evidence.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.ml.holdout_predictions import PredictionsFileError, read_holdout_predictions
from core.ml.monitoring_stats import wilson_interval
from db.repo import channels as channel_repo
from db.repo import gate as repo
from db.repo.datasets import get_dataset
from db.repo.gate import GateRules, SliceItem
from db.repo.models import VersionInfo, get_version
from db.settings import resolve_artifact

log = logging.getLogger(__name__)

# Slice predictions kept per (artifact sha256, feedback ids): the page shows the evidence and
# the action recomputes it on confirm; the second time costs nothing.
_SLICE_CACHE: OrderedDict[tuple[str, tuple[int, ...]], np.ndarray] = OrderedDict()
_SLICE_CACHE_SIZE = 16


@dataclass(frozen=True)
class Check:
    """One rule: passed (True), failed (False) or not applicable (None), and why."""

    rule: str
    passed: bool | None
    detail: str


@dataclass(frozen=True)
class GateResult:
    """What the gate found for one candidate: the evidence (JSON-ready) and the checks."""

    slug: str
    candidate: VersionInfo
    production: VersionInfo | None
    rules: GateRules
    holdout_fingerprint: str | None
    evidence: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [f"{c.rule}: {c.detail}" for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        return not self.failed


def score(correct: np.ndarray, total: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy overall and per class (by true class) with 95 % Wilson intervals."""

    def one(c: int, n: int) -> dict[str, Any]:
        interval = wilson_interval(c, n)
        low, high = interval if interval else (None, None)
        return {"correct": c, "n": n, "accuracy": c / n if n else None, "low": low, "high": high}

    per_class = [
        {"class": k, "name": class_names[k] if k < len(class_names) else str(k),
         **one(int(correct[k]), int(total[k]))}
        for k in range(len(total))
    ]  # fmt: skip
    return {**one(int(correct.sum()), int(total.sum())), "per_class": per_class}


def counts(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(right per true class, items per true class) over `k` classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    right = np.asarray(y_pred, dtype=np.int64) == y_true
    return np.bincount(y_true[right], minlength=k)[:k], np.bincount(y_true, minlength=k)[:k]


def holdout_score(version: VersionInfo, class_names: list[str]) -> dict[str, Any] | None:
    """The version's holdout figures: from its stored predictions file, else its confusion
    matrix, else its headline accuracy alone; None when it has no evaluation at all."""
    k = len(class_names)
    if version.test_predictions_path:
        try:
            p = read_holdout_predictions(resolve_artifact(version.test_predictions_path))
            return {**score(*counts(p.y_true, p.y_pred, k), class_names), "source": "predictions"}
        except PredictionsFileError as exc:
            log.info("gate: %s: %s; using its stored evaluation", version.label, exc)
    matrix = np.asarray(version.evaluation.get("confusion_matrix") or [], dtype=np.int64)
    if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.sum() > 0:
        return {**score(np.diag(matrix), matrix.sum(axis=1), class_names), "source": "confusion"}
    accuracy, n = version.evaluation.get("accuracy"), version.evaluation.get("num_test")
    if not isinstance(accuracy, int | float):
        return None
    found = {"correct": None, "n": n if isinstance(n, int) else None, "accuracy": accuracy}
    interval = wilson_interval(round(accuracy * n), n) if isinstance(n, int) and n > 0 else None
    low, high = interval if interval else (None, None)
    return {**found, "low": low, "high": high, "per_class": [], "source": "accuracy"}


def holdout_note(candidate: VersionInfo, production: VersionInfo | None) -> str | None:
    """Why the two versions' holdout figures do not compare, or None when they do."""
    versions = [candidate] + ([production] if production else [])
    unknown = [v.label for v in versions if v.holdout_fingerprint is None]
    if unknown:
        return f"holdout unknown for {', '.join(unknown)} (trained before holdouts were fixed)"
    if production and candidate.holdout_fingerprint != production.holdout_fingerprint:
        return (
            f"scored on different holdouts ({candidate.label}: "
            f"{candidate.holdout_fingerprint[:12]}, {production.label}: "
            f"{production.holdout_fingerprint[:12]})"
        )
    return None


def _load_images(items: list[SliceItem]) -> tuple[list[SliceItem], list[np.ndarray], list[str]]:
    from core.ml.images import ImageError, decode_image

    kept, images, skipped = [], [], []
    for item in items:
        try:
            images.append(decode_image(resolve_artifact(item.input_path).read_bytes()))
            kept.append(item)
        except (OSError, ImageError) as exc:
            skipped.append(f"feedback {item.feedback_id}: {exc}")
    return kept, images, skipped


def slice_predictions(version: VersionInfo, items: list[SliceItem], images: list[np.ndarray]):
    """Predicted classes of `version` on the slice images (its artifact checked by sha256)."""
    key = (version.artifact_sha256, tuple(i.feedback_id for i in items))
    if key in _SLICE_CACHE:
        _SLICE_CACHE.move_to_end(key)
        return _SLICE_CACHE[key]
    from core.artifacts import verified_artifact
    from core.ml.evaluation import predict_probabilities
    from core.ml.images import fit_to_shape
    from core.ml.inference import load_model

    model = load_model(verified_artifact(version))
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    x = np.stack([fit_to_shape(img, shape) for img in images])
    predicted = predict_probabilities(model, x).argmax(axis=1)
    _SLICE_CACHE[key] = predicted
    while len(_SLICE_CACHE) > _SLICE_CACHE_SIZE:
        _SLICE_CACHE.popitem(last=False)
    return predicted


def slice_evidence(
    session: Session, channel_id: int, versions: list[VersionInfo], class_names: list[str]
) -> dict[str, Any]:
    """Both versions on the channel's annotated feedback that neither trained on."""
    items = repo.feedback_slice(
        session=session, channel_id=channel_id, version_ids=[v.id for v in versions]
    )
    k = len(class_names)
    items = [i for i in items if 0 <= i.true_class < k]
    found: dict[str, Any] = {"n": len(items), "feedback_ids": [i.feedback_id for i in items[:200]]}
    if not items:
        return {**found, "note": "no annotated feedback that neither version trained on"}
    items, images, skipped = _load_images(items)
    found.update(n=len(items), skipped=skipped[:20])
    if not items:
        return {**found, "note": "no stored input image of the slice could be read"}
    y = np.asarray([i.true_class for i in items])
    try:
        for role, version in zip(("candidate", "production"), versions, strict=False):
            predicted = slice_predictions(version, items, images)
            found[role] = score(*counts(y, predicted, k), class_names)
    except Exception as exc:  # noqa: BLE001 - a missing or broken artifact: said, not raised
        log.warning("gate: cannot score the feedback slice: %s", exc)
        found.pop("candidate", None)
        return {**found, "note": f"could not score the slice: {exc}", "error": True}
    return found


def _rule_checks(rules: GateRules, holdout: dict, sliced: dict, has_prod: bool) -> list[Check]:
    cand, prod = holdout.get("candidate"), holdout.get("production")
    checks = []
    if has_prod:
        note = holdout.get("note")
        checks.append(Check("same holdout", note is None, note or "both scored on it"))
    if rules.min_accuracy is not None:
        acc = cand.get("accuracy") if cand and holdout.get("known") else None
        checks.append(
            Check("floor", False, "no holdout accuracy of the candidate to check")
            if acc is None
            else Check(
                "floor",
                acc >= rules.min_accuracy,
                f"candidate {acc:.1%} vs floor {rules.min_accuracy:.1%}",
            )  # fmt: skip
        )
    if has_prod and holdout.get("note") is None and cand and prod:
        checks.append(_regression("holdout regression", cand, prod, rules.max_regression))
    if has_prod:
        checks.append(_slice_check(rules, sliced))
    return checks


def _regression(rule: str, cand: dict, prod: dict, max_regression: float) -> Check:
    a, b = cand.get("accuracy"), prod.get("accuracy")
    if a is None or b is None:
        return Check(rule, None, "no accuracy to compare")
    return Check(
        rule, a - b >= -max_regression - 1e-12,
        f"candidate {a:.1%} vs production {b:.1%} ({(a - b) * 100:+.1f} points; "
        f"at most -{max_regression * 100:g} allowed)",
    )  # fmt: skip


def _slice_check(rules: GateRules, sliced: dict) -> Check:
    n, rule = sliced.get("n", 0), "feedback-slice regression"
    if n < rules.min_slice:
        return Check(rule, None, f"{n} items, fewer than the {rules.min_slice} it needs")
    if sliced.get("error"):
        return Check(rule, False, sliced.get("note", "could not score the slice"))
    return _regression(rule, sliced["candidate"], sliced["production"], rules.max_regression)


def _label(v: VersionInfo | None) -> dict[str, Any] | None:
    return None if v is None else {"id": v.id, "label": v.label, "holdout": v.holdout_fingerprint}


def evaluate_gate(*, session: Session, slug: str, version_id: int) -> GateResult:
    """Compare `version_id` with the channel's production version and judge it by the rules."""
    channel = channel_repo.get_channel(session=session, slug=slug)
    rules = repo.gate_rules(session=session, slug=slug)
    candidate = get_version(session=session, version_id=version_id)
    production = (
        None
        if channel.production_version_id is None
        else get_version(session=session, version_id=channel.production_version_id)
    )
    class_names = [
        str(c) for c in get_dataset(session=session, dataset_id=candidate.dataset_id).class_names
    ]
    note = holdout_note(candidate, production)
    known = candidate.holdout_fingerprint is not None
    # Figures from different or unknown holdouts are never set side by side (only the
    # candidate's own, on a known holdout, for the floor).
    holdout = {
        "fingerprint": candidate.holdout_fingerprint, "note": note, "known": known,
        "candidate": holdout_score(candidate, class_names) if known else None,
        "production": holdout_score(production, class_names)
        if production and note is None else None,
    }  # fmt: skip
    versions = [candidate] + ([production] if production else [])
    sliced = (
        slice_evidence(session, channel.id, versions, class_names)
        if production
        else {"n": 0, "note": "no production version to compare with"}
    )
    checks = _rule_checks(rules, holdout, sliced, production is not None)
    evidence = {
        "candidate": _label(candidate), "production": _label(production),
        "rules": {"min_accuracy": rules.min_accuracy, "max_regression": rules.max_regression,
                  "min_slice": rules.min_slice},
        "class_names": class_names, "holdout": holdout, "slice": sliced,
        "checks": [{"rule": c.rule, "passed": c.passed, "detail": c.detail} for c in checks],
    }  # fmt: skip
    fingerprint = candidate.holdout_fingerprint if note is None else None
    return GateResult(slug, candidate, production, rules, fingerprint, evidence, checks)


def refusal_message(result: GateResult) -> str:
    """One paragraph: what the gate refused and every rule that failed."""
    against = f" against {result.production.label}" if result.production else ""
    return (
        f"the promotion gate refuses {result.candidate.label} on {result.slug!r}{against}: "
        + "; ".join(result.failed)
        + ". A manager may override it with a written reason."
    )


def _cell(found: dict[str, Any] | None) -> str:
    if not found or found.get("accuracy") is None:
        return "—"
    text = f"{found['accuracy']:.1%}"
    if found.get("low") is not None:
        text += f" [{found['low']:.1%}–{found['high']:.1%}]"
    return text + (f" n={found['n']}" if found.get("n") is not None else "")


def _change(cand: dict[str, Any] | None, prod: dict[str, Any] | None) -> str:
    a, b = (cand or {}).get("accuracy"), (prod or {}).get("accuracy")
    return "—" if a is None or b is None else f"{(a - b) * 100:+.1f}"


def evidence_rows(evidence: dict[str, Any]) -> list[dict[str, str]]:
    """The side-by-side table of stored evidence: one row per set (holdout, feedback slice)
    and class, production and candidate accuracy with 95 % intervals, change in points."""
    rows = []
    for key, name in (("holdout", "holdout"), ("slice", "feedback slice")):
        found = evidence.get(key) or {}
        cand, prod = found.get("candidate"), found.get("production")
        if not cand and not prod:
            continue
        rows.append({"set": name, "class": "all", "production": _cell(prod),
                     "candidate": _cell(cand), "change": _change(cand, prod)})  # fmt: skip
        by_class = {c["class"]: c for c in (prod or {}).get("per_class", [])}
        for c in (cand or {}).get("per_class", []):
            p = by_class.get(c["class"])
            rows.append({"set": name, "class": c["name"], "production": _cell(p),
                         "candidate": _cell(c), "change": _change(c, p)})  # fmt: skip
    return rows


def check_lines(evidence: dict[str, Any]) -> list[str]:
    """One line per rule: pass, FAIL or n/a, and why."""
    marks = {True: "pass", False: "FAIL", None: "n/a"}
    return [
        f"{marks[c['passed']]:4} {c['rule']}: {c['detail']}" for c in evidence.get("checks", [])
    ]
