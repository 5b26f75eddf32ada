"""Models: the registry table (filters, server-side paging), version detail and comparison."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import ui, versions
from db.queries.lookups import list_channels, list_models
from db.queries.registry import (
    VERSION_SORTS,
    VERSION_STATUSES,
    VersionFilter,
    version_choices,
    version_page,
)

PAGE_SIZE = 25
REGISTRY = ui.Paging("reg_page", PAGE_SIZE, "versions", "No version matches these filters.")


def filter_bar() -> tuple[VersionFilter, str]:
    model_list = ui.read(list_models)
    channel_list = ui.read(list_channels)
    search, model, channel, status, dates, sort = st.columns([3, 2, 2, 2, 3, 2])
    text = search.text_input("Search", key="reg_search", placeholder="name, architecture, v12…")
    models = {m.id: m.name for m in model_list}
    model_id = ui.optional_select(model, "Model", models, "reg_model", "all")
    channels = {c.id: c.slug for c in channel_list}
    channel_id = ui.optional_select(channel, "Channel", channels, "reg_channel", "all")
    state = ui.select(status, "Status", VERSION_STATUSES, "reg_status")
    period = dates.date_input("Created between", value=(), key="reg_dates")
    order = ui.select(sort, "Sort", VERSION_SORTS, "reg_sort")
    start, end = (
        (list(period) + [None, None])[:2] if isinstance(period, tuple | list) else (period, None)
    )
    return VersionFilter(text, model_id, channel_id, state, start, end), order


def registry_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "version": [f"models?version={r.id}" for r in rows],
            "model": [r.label for r in rows],
            "status": [r.status for r in rows],
            "serving": [r.channels for r in rows],
            "accuracy": [r.accuracy for r in rows],
            "F1 (macro)": [r.f1_macro for r in rows],
            "architecture": [r.architecture for r in rows],
            "dataset": [r.dataset_name for r in rows],
            "feedback items": [r.feedback_samples for r in rows],
            "device": [r.device for r in rows],
            "by": [r.created_by for r in rows],
            "created": [r.created_at for r in rows],
        }
    )


def registry_table() -> None:
    filters, sort = filter_bar()
    if st.session_state.get("reg_last_filters") != (filters, sort):
        st.session_state["reg_last_filters"] = (filters, sort)
        st.session_state[REGISTRY.key] = 1
    rows, _total, pages = ui.read_page(version_page, filters, sort, REGISTRY)
    if not rows:
        return
    st.dataframe(
        registry_frame(rows),
        hide_index=True,
        width="stretch",
        column_config={
            "version": st.column_config.LinkColumn("open", display_text="details"),
            "accuracy": st.column_config.ProgressColumn(
                "accuracy", format="percent", min_value=0, max_value=1
            ),
            "F1 (macro)": st.column_config.NumberColumn(format="%.3f"),
            "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    ui.page_input(pages, REGISTRY.key)
    open_or_compare([(r.id, r.label) for r in rows])


def open_or_compare(choices: list[tuple[int, str]]) -> None:
    labels = dict(choices)
    left, right = st.columns(2)
    with left:
        chosen = ui.optional_select(st, "Open a version", labels, "open_version", "—")
        if chosen is not None:
            ui.version_link(chosen, f"Open {labels[chosen]}")
    with right:
        picked = st.multiselect(
            "Compare versions", list(labels), key="compare_pick", format_func=lambda i: labels[i]
        )
        if len(picked) >= 2:
            st.page_link(
                ui.MODELS,
                query_params={"compare": ",".join(map(str, picked))},
                label=f"Compare {len(picked)} versions",
                icon=":material/compare:",
            )


def compare_ids() -> list[int]:
    raw = st.query_params.get("compare", "")
    return [int(p) for p in raw.split(",") if p.strip().isdigit()]


def main() -> None:
    ui.page_header("Models", "Every registered version: how it was trained and how it performs.")
    version_id, to_compare = ui.int_param("version"), compare_ids()
    try:
        if version_id is not None:
            st.page_link(ui.MODELS, label="All versions", icon=":material/arrow_back:")
            versions.version_detail(version_id)
        elif to_compare:
            st.page_link(ui.MODELS, label="All versions", icon=":material/arrow_back:")
            options = dict(ui.read(version_choices, limit=500))
            versions.compare_versions(to_compare, options)
        else:
            registry_table()
    except Exception as exc:  # noqa: BLE001 - a message, never a traceback
        ui.show_failure("show the registry", exc)


main()
