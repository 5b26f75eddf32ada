"""Feedback: the review queue with filters and sorting, verdicts one by one or in bulk."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.actions.feedback import AnnotationInput, accept_suggestions, bulk_annotate
from dashboard import review, ui
from db.models import RATINGS, REVIEW_STATUSES, VERDICTS
from db.queries.lookups import count_training_items, list_channels
from db.queries.registry import version_choices
from db.queries.review import (
    REVIEW_SORTS,
    ReviewFilter,
    ReviewRow,
    class_names_by_channel,
    review_ids,
    review_item,
    review_page,
)

PAGE_SIZE = 10
BULK_LIMIT = 2000  # accepting 500 suggestions took 0.42 s on the demo registry
QUEUE = ui.Paging("fb_page", PAGE_SIZE, "items", "Nothing to review with these filters.")


def class_count() -> int:
    """Classes of the largest channel dataset (class filters and bulk corrections)."""
    return max((len(v) for v in ui.read(class_names_by_channel).values()), default=10)


def apply_query_filters(channels: dict[int, str]) -> None:
    """?channel= (id or slug) and ?rating= preset the filters whenever they change, so a link
    from the Loop or Overview page opens the queue it names, even after an earlier visit."""
    wanted = st.query_params.get("channel")
    by_slug = {slug: cid for cid, slug in channels.items()}
    channel_id = by_slug.get(wanted) if wanted in by_slug else ui.int_param("channel")
    given = (channel_id, st.query_params.get("rating"))
    if given == st.session_state.get("fb_query") or channel_id not in channels:
        return
    st.session_state["fb_query"] = given
    st.session_state["fb_channel"] = channel_id
    if given[1] in RATINGS:
        st.session_state["fb_rating"] = given[1]
    st.session_state["fb_status"] = "pending"


def filter_bar() -> tuple[ReviewFilter, str]:
    channels = {c.id: c.slug for c in ui.read(list_channels)}
    apply_query_filters(channels)
    n_classes = class_count()
    versions = dict(ui.read(version_choices, limit=200))
    row1, row2 = st.columns(5), st.columns(5)
    classes = {i: str(i) for i in range(n_classes)}
    channel_id = ui.optional_select(row1[0], "Channel", channels, "fb_channel")
    rating = ui.optional_select(row1[1], "Rating", {r: r for r in RATINGS}, "fb_rating")
    statuses = {s: s for s in REVIEW_STATUSES}
    status = ui.optional_select(row1[2], "Status", statuses, "fb_status", default="pending")
    version_id = ui.optional_select(row1[3], "Version", versions, "fb_version")
    sort = ui.select(row1[4], "Sort", REVIEW_SORTS, "fb_sort")
    predicted = ui.optional_select(row2[0], "Predicted class", classes, "fb_predicted")
    claimed = ui.optional_select(row2[1], "Claimed class", classes, "fb_claimed")
    period = row2[2].date_input("Received between", value=(), key="fb_dates")
    start, end = (
        (list(period) + [None, None])[:2] if isinstance(period, tuple | list) else (period, None)
    )
    filters = ReviewFilter(channel_id, rating, status, predicted, claimed, version_id, start, end)
    return filters, sort


def training_counter() -> None:
    unused = ui.read(count_training_items, unused_only=True)
    left, right = st.columns([3, 1])
    left.metric(
        "Annotated items not yet used for training",
        f"{unused:,}",
        border=True,
        help="Confirmed or corrected feedback that no version has learned from yet (inputs "
        "identical to a holdout image are never trained on, so they are not counted).",
    )
    st.session_state["fb_unused"] = unused
    # Fine-tune what the chosen channel (or else the first one serving a version) serves.
    chosen = st.session_state.get("fb_channel")  # an id, or ui.NOTHING: no channel chosen
    serving = [c for c in ui.read(list_channels) if c.production_version_id is not None]
    channel = next((c for c in serving if c.id == chosen), serving[0] if serving else None)
    ui.retrain_link(
        channel.slug if channel else None,
        channel.production_version_id if channel else None,
        "Retrain with annotated feedback",
        where=right,
    )


def queue_table(rows: list[ReviewRow]) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                "id": [r.id for r in rows],
                "status": [r.review_status for r in rows],
                "channel": [r.channel_slug for r in rows],
                "version": [r.version_label for r in rows],
                "predicted": [r.predicted_class for r in rows],
                "confidence": [r.confidence for r in rows],
                "rating": [r.rating for r in rows],
                "claimed": [r.claimed_class for r in rows],
                "comment": [r.comment for r in rows],
                "received": [r.created_at for r in rows],
            }
        ),
        hide_index=True,
        width="stretch",
        key="fb_table",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "confidence": st.column_config.ProgressColumn(
                min_value=0, max_value=1, format="percent"
            ),
            "received": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )


def current_position(rows: list[ReviewRow]) -> int:
    """Index of the item under review: a newly clicked row, else the remembered one, else 0."""
    ids = [r.id for r in rows]
    picked = (st.session_state.get("fb_table") or {}).get("selection", {}).get("rows", [])
    if picked and picked != st.session_state.get("fb_last_click"):
        st.session_state["fb_last_click"] = picked
        st.session_state["fb_current"] = ids[picked[0]] if picked[0] < len(ids) else None
    current = st.session_state.get("fb_current")
    return ids.index(current) if current in ids else 0


def bulk_panel(filters: ReviewFilter, sort: str, total: int, actor: str) -> None:
    count = min(total, BULK_LIMIT)
    if not ui.allowed("annotator"):
        return  # the verdict form below says why
    with st.expander(f"Bulk verdict on the filtered selection ({count:,} of {total:,} items)"):
        with st.form("bulk"):
            verdict = ui.select(st, "Verdict", VERDICTS, "fb_bulk_verdict")
            true_class = ui.select(
                st, "True class (for corrected)", range(class_count()), "fb_bulk_class"
            )
            tags = st.text_input("Tags (comma-separated)", key="fb_bulk_tags")
            note = st.text_input("Note", key="fb_bulk_note")
            apply = st.form_submit_button(f"Apply to {count:,} items", key="fb_bulk_apply")
        if not apply or count == 0:
            return
        ids = ui.read_fresh(review_ids, filters=filters, sort=sort, limit=BULK_LIMIT)
        annotation = AnnotationInput(
            verdict=verdict,
            true_class=int(true_class) if verdict == "corrected" else None,
            tags=tags.split(","),
            note=note,
            num_classes=class_count(),
        )
        result = ui.act(bulk_annotate, feedback_ids=ids, annotation=annotation)
        if result is None:
            return
        ui.flash(f"Stored {verdict} on {len(result.applied):,} items as {actor}.")
        if result.skipped:
            ui.flash(f"Skipped {len(result.skipped)}: " + "; ".join(result.skipped[:5]), "warning")
        st.rerun()


def accept_button(filters: ReviewFilter, sort: str, total: int) -> None:
    """One click: every pending item of the selection gets its own suggested verdict."""
    count = min(total, BULK_LIMIT)
    pending = filters.status == "pending"
    refused = ui.why_not("annotator")
    clicked = st.button(
        f"Accept the suggestions on {count:,} items",
        key="fb_accept",
        type="primary",
        icon=":material/done_all:",
        disabled=bool(refused) or not pending or count == 0,
        help=refused
        or (
            "Each item gets its own suggested verdict and class (see an item's suggestion below)."
            if pending
            else "Only for pending items: set Status to pending."
        ),
    )
    if not clicked:
        return
    ids = ui.read_fresh(review_ids, filters=filters, sort=sort, limit=BULK_LIMIT)
    result = ui.act(accept_suggestions, feedback_ids=ids)
    if result is not None:
        ui.flash(f"Accepted the suggestion on {len(result.applied):,} items.")
        if st.query_params.get("back") == "loop":  # opened from the Loop: its next step is there
            st.switch_page(ui.LOOP)
        st.rerun()


def _go_to(feedback_id: int | None) -> None:
    st.session_state["fb_current"] = feedback_id


def review_current(rows: list[ReviewRow], actor: str) -> None:
    pos = current_position(rows)
    item = ui.read_fresh(review_item, feedback_id=rows[pos].id)
    prev, label, nxt = st.columns([1, 4, 1])
    # Moving is done in the buttons' callbacks, before the run that draws the new item: one run
    # per key press, not a second one by st.rerun(). (The filters that fell back to their
    # defaults after j/k did so through a fixed default; `ui.select` keeps them.)
    earlier = rows[pos - 1].id if pos > 0 else None
    later = rows[pos + 1].id if pos + 1 < len(rows) else None
    prev.button("Previous (K)", key="fb_prev", disabled=earlier is None, shortcut="k",
                on_click=_go_to, args=(earlier,))  # fmt: skip
    label.markdown(f"**Item {pos + 1} of {len(rows)} on this page** · feedback #{item.row.id}")
    nxt.button("Next (J)", key="fb_next", disabled=later is None, shortcut="j",
               on_click=_go_to, args=(later,))  # fmt: skip
    verdict = review.item_panel(item)
    if verdict:
        st.session_state["fb_current"] = rows[pos + 1].id if pos + 1 < len(rows) else None
        ui.flash(f"Stored {verdict} on feedback #{item.row.id} as {actor}.")
        st.rerun()


def main() -> None:
    actor = ui.page_header(
        "Feedback", "Review what users said; annotated items train the next version."
    )
    try:
        training_counter()
        filters, sort = filter_bar()
        rows, total, pages = ui.read_page(review_page, filters, sort, QUEUE)
        if not rows:
            return
        accept_button(filters, sort, total)
        review_current(rows, actor)
        st.markdown("**Queue** (select a row to review it)")
        queue_table(rows)
        ui.page_input(pages, QUEUE.key)
        bulk_panel(filters, sort, total, actor)
    except Exception as exc:  # noqa: BLE001 - a message, never a traceback
        ui.show_failure("show the feedback queue", exc)


main()
