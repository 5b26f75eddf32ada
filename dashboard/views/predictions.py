"""Predictions: the stored prediction log of one channel, filtered and paged, with inputs."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.review import input_image
from db.queries.lookups import get_dataset
from db.queries.predictions import PredictionFilter, PredictionRow, prediction_page
from db.queries.timeline import version_labels

PAGE_SIZE = 50


def filter_bar(channels) -> PredictionFilter:
    by_slug = {c.slug: c for c in channels}
    wanted = st.query_params.get("channel")
    a, b, c, d = st.columns([2, 1, 1, 2])
    slug = ui.select(a, "Channel", by_slug, "pl_channel", default=wanted)
    arm = ui.select(b, "Arm", ["any", "production", "candidate"], "pl_arm")
    names = class_names(by_slug[slug])
    cls = ui.optional_select(c, "Predicted class", dict(enumerate(names)), "pl_class")
    low, high = d.slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="pl_conf")
    a, b, c = st.columns([2, 2, 2])
    days = a.date_input("Days (UTC)", value=(), key="pl_days")
    source = ui.select(b, "Traffic", ["all", "live only", "simulated only"], "pl_sim")
    first, last = (tuple(days) + (None, None))[:2] if days else (None, None)
    return PredictionFilter(
        channel_id=by_slug[slug].id,
        arm=None if arm == "any" else arm,
        predicted_class=cls,
        min_confidence=low,
        max_confidence=high,
        first_day=first,
        last_day=last,
        simulated={"all": None, "live only": False, "simulated only": True}[source],
    )


def class_names(channel) -> list[str]:
    if channel.dataset_id is None:
        return [str(i) for i in range(10)]
    return ui.read(get_dataset, dataset_id=channel.dataset_id).class_names


def table(rows: list[PredictionRow], names: list[str]) -> int | None:
    """The page of rows; returns the position of the selected row, if any."""

    def name(i: int | None) -> str:
        return "" if i is None else (names[i] if 0 <= i < len(names) else str(i))

    versions = ui.read(version_labels, ids=frozenset(r.version_id for r in rows))

    frame = pd.DataFrame(
        {
            "time (UTC)": [r.created_at.strftime("%Y-%m-%d %H:%M:%S") for r in rows],
            "arm": [r.arm for r in rows],
            "version": [versions.get(r.version_id, f"id {r.version_id}") for r in rows],
            "predicted": [name(r.predicted_class) for r in rows],
            "confidence": [r.confidence for r in rows],
            "latency ms": [r.latency_ms for r in rows],
            "feedback": [r.rating or "" for r in rows],
            "user says": [name(r.claimed_class) for r in rows],
            "simulated": [r.simulated for r in rows],
        }
    )
    event = st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="pl_table",
        column_config={
            "confidence": st.column_config.ProgressColumn(min_value=0, max_value=1),
            "latency ms": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    selected = event.selection.rows if event and event.selection else []
    return selected[0] if selected else None


def detail(row: PredictionRow, names: list[str]) -> None:
    left, right = st.columns([1, 3])
    image = input_image(row.input_path)
    if image is None:
        left.caption("No stored input for this prediction.")
    else:
        left.image(image, caption="input as received")
    right.markdown(f"**Prediction** `{row.id}`")
    right.text(
        f"class {names[row.predicted_class] if row.predicted_class < len(names) else '?'}"
        f" at {row.confidence:.1%}, {row.latency_ms:.1f} ms, {row.arm} arm, "
        f"{ui.read(version_labels, ids=frozenset({row.version_id})).get(row.version_id, '?')}"
        f"{', simulated' if row.simulated else ''}"
    )


def main() -> None:
    ui.page_header("Predictions", "The prediction log: every answer, its input and its feedback.")
    channels = ui.channels_or_note()
    if not channels:
        return
    filters = filter_bar(channels)
    cursor: list[datetime] = st.session_state.setdefault("pl_cursor", [])
    if st.session_state.get("pl_filters") != filters:
        st.session_state["pl_filters"], cursor[:] = filters, []
    rows = ui.read_fresh(
        prediction_page, filters=filters, before=cursor[-1] if cursor else None, limit=PAGE_SIZE
    )
    names = class_names(next(c for c in channels if c.id == filters.channel_id))
    if not rows:
        st.info("No prediction matches these filters." if not cursor else "No older predictions.")
    else:
        st.caption(f"Page {len(cursor) + 1}: {len(rows)} predictions, newest first.")
        chosen = table(rows, names)
        if chosen is not None:
            detail(rows[chosen], names)
    a, b = st.columns(2)
    if a.button("Newer", key="pl_newer", disabled=not cursor):
        cursor.pop()
        st.rerun()
    if b.button("Older", key="pl_older", disabled=len(rows) < PAGE_SIZE):
        cursor.append(rows[-1].created_at)
        st.rerun()


main()
