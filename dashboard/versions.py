"""Version detail and side-by-side comparison, drawn inside the Models page.

Versions compare only when they were scored on the same dataset holdout; `holdout_refusal`
says why not otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.ml.holdout_predictions import (
    HoldoutPredictions,
    PredictionsFileError,
    read_holdout_predictions,
)
from dashboard import charts, ui
from db.queries.lookups import VersionInfo, get_dataset, get_version, training_items_of
from db.settings import resolve_artifact

HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def holdout_label(v: VersionInfo) -> str:
    """Which holdout a version's figures come from, in words."""
    if v.holdout_fingerprint is None:
        return "holdout unknown (trained before its dataset's holdout was fixed)"
    tests = v.evaluation.get("num_test")
    size = f", {tests:,} test samples" if isinstance(tests, int) else ""
    return f"holdout `{v.holdout_fingerprint[:12]}` of {v.dataset_name}{size}"


def holdout_refusal(versions: list[VersionInfo]) -> str | None:
    """Why these versions' offline figures must not be set side by side, or None if they may."""
    unknown = [v.label for v in versions if v.holdout_fingerprint is None]
    if unknown:
        return (
            f"Not compared: {', '.join(unknown)} {'was' if len(unknown) == 1 else 'were'} scored "
            "on an unknown holdout (trained before the dataset's holdout was fixed). Retrain "
            "to get figures that compare."
        )
    if len({v.holdout_fingerprint for v in versions}) > 1:
        used = "; ".join(f"{v.label}: {v.holdout_fingerprint[:12]}" for v in versions)
        return (
            f"Not compared: these versions were scored on different holdouts ({used}), so "
            "their figures do not measure the same thing."
        )
    return None


def headline_metrics(v: VersionInfo) -> None:
    ev = v.evaluation
    ui.metric_row(
        [
            ("Accuracy", ui.pct(ev.get("accuracy"))),
            ("Precision (macro)", ui.pct(ev.get("precision_macro"))),
            ("Recall (macro)", ui.pct(ev.get("recall_macro"))),
            ("F1 (macro)", ui.pct(ev.get("f1_macro"))),
            ("Test loss", f"{ev['loss']:.4f}" if "loss" in ev else "—"),
            ("Test samples", f"{ev.get('num_test', '—')}"),
        ]
    )


def lineage(v: VersionInfo) -> None:
    dataset = ui.read(get_dataset, dataset_id=v.dataset_id)
    items = ui.read(training_items_of, version_id=v.id)
    if v.parent_version_id:
        parent = ui.read(get_version, version_id=v.parent_version_id).label
        ui.version_link(
            v.parent_version_id,
            f"Parent: {parent} (fine-tuned from it)",
            ":material/account_tree:",
        )
    else:
        st.markdown("**Parent:** none — trained from scratch")
    if v.job_id:
        ui.job_link(v.job_id, f"Training job #{v.job_id}")
    st.markdown(
        f"**Dataset:** {dataset.name} ({dataset.source}, {dataset.num_samples:,} samples)  \n"
        f"**Fingerprint at training:** `{v.dataset_fingerprint[:16]}…`"
        + (
            " (matches the dataset now)"
            if v.dataset_fingerprint == dataset.fingerprint
            else " — **the dataset has changed since**"
        )
        + f"  \n**Device:** {v.device} · **train time:** {v.train_seconds:,.1f} s · "
        f"**by** {v.created_by} on {ui.when(v.created_at)}  \n"
        f"**Artifact:** `{v.artifact_path}` (sha256 `{v.artifact_sha256[:12]}…`)"
    )
    st.markdown(f"**Scored on:** {holdout_label(v)}")
    st.markdown(f"**Feedback items learned from:** {len(items)}")
    if items:
        st.dataframe(
            pd.DataFrame(items, columns=["feedback", "annotation", "true class"]),
            hide_index=True,
            height=200,
        )
    if v.framework_versions:
        st.caption(" · ".join(f"{k} {val}" for k, val in sorted(v.framework_versions.items())))


def version_detail(version_id: int) -> None:
    v = ui.read_found(get_version, version_id=version_id)
    if v is None:
        return
    serving = " ".join(f":green-badge[serves {s}]" for s in v.serving_channels) or ui.badge(
        "archived"
    )
    st.subheader(f"{v.label} · {v.architecture} {serving}")
    headline_metrics(v)
    st.page_link(
        ui.RETRAIN,
        query_params={"base": v.id},
        label="Retrain from this version",
        icon=":material/restart_alt:",
    )
    if v.parent_version_id:
        st.page_link(
            ui.MODELS,
            query_params={"compare": f"{v.parent_version_id},{v.id}"},
            label="Compare with its parent",
            icon=":material/compare:",
        )
    evaluation, training, origin = st.tabs(["Evaluation", "Training", "Lineage"])
    with evaluation:
        if v.evaluation.get("per_class"):
            st.plotly_chart(charts.per_class_bars(v.evaluation["per_class"]), key="per_class")
        if v.evaluation.get("confusion_matrix"):
            names = [c.get("name", c["class"]) for c in v.evaluation.get("per_class", [])]
            st.plotly_chart(
                charts.confusion_heatmap(v.evaluation["confusion_matrix"], names), key="confusion"
            )
    with training:
        if v.history:
            st.plotly_chart(charts.training_curves({v.label: v.history}), key="curves")
        st.dataframe(pd.DataFrame([v.hyperparameters]), hide_index=True)
    with origin:
        lineage(v)


@st.cache_resource(show_spinner="Loading the test images…", max_entries=2)
def _dataset_images(source: str, location: str | None) -> tuple[np.ndarray, str]:
    from core.ml.datasets import load_dataset  # lazy: only the comparison needs the pixels

    data = load_dataset(source, location)
    return data.x, data.fingerprint


def _test_predictions(v: VersionInfo) -> HoldoutPredictions | None:
    if not v.test_predictions_path:
        return None
    try:
        return read_holdout_predictions(resolve_artifact(v.test_predictions_path))
    except PredictionsFileError as exc:
        st.warning(f"{v.label}: {exc}", icon=":material/warning:")
        return None


def sample_grid(rows: list[tuple[int, int, int, int]], a: VersionInfo, b: VersionInfo) -> None:
    st.caption(f"{len(rows)} test samples {a.label} gets right and {b.label} gets wrong")
    images = None
    try:
        ds = ui.read(get_dataset, dataset_id=a.dataset_id)
        images, fingerprint = _dataset_images(ds.source, ds.location)
        images = images if fingerprint == a.dataset_fingerprint else None
    except Exception:  # noqa: BLE001 - pictures are a bonus; the table below still answers
        images = None
    if images is not None and rows:
        shown = rows[:12]
        st.image(
            [images[i] for i, *_ in shown],
            width=96,
            caption=[f"#{i}: {t}, {b.label.split()[-1]} said {q}" for i, t, _p, q in shown],
        )
    if rows:
        st.dataframe(
            pd.DataFrame(rows, columns=["sample", "true", a.label, b.label]),
            hide_index=True,
        )


def compare_versions(version_ids: list[int], options: dict[int, str]) -> None:
    choices = sorted(set(options) | set(version_ids), reverse=True)
    picked = st.multiselect(
        "Versions to compare",
        choices,
        default=version_ids,
        key="compare",
        format_func=lambda i: options.get(i, f"version id {i}"),
    )
    found = [ui.read(get_version, version_id=i) for i in picked]
    if len(found) < 2:
        st.info("Pick two or more versions to compare.")
        return
    refusal = holdout_refusal(found)
    if refusal:
        st.error(refusal, icon=":material/block:")
        return
    st.caption(f"All scored on {holdout_label(found[0])}")
    st.subheader("Metrics")
    table = {v.label: {m: v.evaluation.get(m) for m in HEADLINE} for v in found}
    st.dataframe(pd.DataFrame(table).T.style.format("{:.2%}", na_rep="—"))
    st.plotly_chart(charts.metric_comparison(table), key="cmp_metrics")
    base = found[0]
    st.subheader(f"Per-class F1 change against {base.label}")
    for other in found[1:]:
        st.caption(f"{base.label} → {other.label}")
        st.plotly_chart(
            charts.per_class_delta(
                base.evaluation.get("per_class", []), other.evaluation.get("per_class", [])
            ),
            key=f"delta-{other.id}",
        )
    st.subheader("Training curves")
    st.plotly_chart(charts.training_curves({v.label: v.history for v in found}), key="cmp_curves")
    st.subheader("Test samples where they disagree")
    a_pred, b_pred = _test_predictions(found[0]), _test_predictions(found[1])
    if a_pred is None or b_pred is None:
        st.info("Test predictions are not stored for one of the first two versions.")
        return
    left, right = st.columns(2)
    with left:
        sample_grid(a_pred.right_where_other_wrong(b_pred), found[0], found[1])
    with right:
        sample_grid(b_pred.right_where_other_wrong(a_pred), found[1], found[0])
