"""One feedback item under review: input, prediction, user claim, suggestion and verdict form."""

from __future__ import annotations

import io

import numpy as np
import streamlit as st

from core.actions.feedback import AnnotationInput, annotate_feedback
from dashboard import charts, ui
from db.artifact_store import artifact_store
from db.queries.lookups import annotation_history
from db.queries.review import ReviewItem, suggest_verdict

IMAGE_PX = 168


def input_image(relative_path: str | None) -> np.ndarray | None:
    """The stored request image, scaled up with sharp pixels, or None when it is missing."""
    if not relative_path:
        return None
    try:
        from PIL import Image

        data = artifact_store().read_bytes(relative_path)
        with Image.open(io.BytesIO(data)) as img:
            scale = max(1, IMAGE_PX // max(img.size))
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError):
        return None


def class_label(item: ReviewItem, index: int | None) -> str:
    """A class as plain text (a widget label); `shown_class` for Markdown."""
    if index is None:
        return "—"
    names = item.class_names
    name = names[index] if 0 <= index < len(names) else str(index)
    return name if name == str(index) else f"{index} · {name}"


def shown_class(item: ReviewItem, index: int | None) -> str:
    """A class for a Markdown string: names come from dataset folders, so they stay text."""
    return ui.md_text(class_label(item, index))


HOLDOUT_NOTE = (
    ":material/lock: This input is one of the dataset's holdout images: a verdict on it counts "
    "in live accuracy and the gate's comparisons, but no retrain learns it."
)


def what_was_said(item: ReviewItem) -> None:
    row = item.row
    thumb = (
        ":green-badge[:material/thumb_up: up]"
        if row.rating == "up"
        else ":red-badge[:material/thumb_down: down]"
    )
    st.markdown(
        f"**Model ({ui.md_text(row.version_label)})** predicted "
        f"**{shown_class(item, row.predicted_class)}** "
        f"with {row.confidence:.0%} confidence  \n"
        f"**User on `{row.channel_slug}`** {thumb}"
        + (
            f" — says it is **{shown_class(item, row.claimed_class)}**"
            if row.claimed_class is not None
            else ""
        )
    )
    if row.comment:
        # The end user's words, exactly as sent: never Markdown or HTML.
        st.text(f"Comment: {row.comment}")
    if item.holdout_image:
        st.caption(HOLDOUT_NOTE)
    tip = suggest_verdict(item)
    st.info(
        f"Suggestion: **{tip.verdict}**"
        + (f" as {shown_class(item, tip.true_class)}" if tip.true_class is not None else "")
        + f" — {ui.md_text(tip.reason)}",
        icon=":material/lightbulb:",
    )
    if item.current_verdict:
        st.markdown(
            f"Current verdict {ui.badge(item.current_verdict)} by "
            f"**{ui.md_text(item.current_author)}**"
            + (
                f" as {shown_class(item, item.current_true_class)}"
                if item.current_true_class is not None
                else ""
            )
        )


def reset_form_for(item: ReviewItem) -> None:
    """Pre-fill the verdict form when a new item comes up (keys stay stable for shortcuts)."""
    if st.session_state.get("fb_shown") == item.row.id:
        return
    st.session_state["fb_shown"] = item.row.id
    tip = suggest_verdict(item)
    default = item.current_true_class if item.current_true_class is not None else tip.true_class
    st.session_state["fb_true_class"] = default if default is not None else item.row.predicted_class
    st.session_state["fb_tags"] = ", ".join(item.current_tags)
    st.session_state["fb_note"] = item.current_note


def verdict_form(item: ReviewItem) -> str | None:
    """The three verdicts as one form (keyboard: Y confirm, E correct, N reject as noise)."""
    if not ui.role_note("annotator"):
        return None
    reset_form_for(item)
    with st.form("verdict"):
        classes = list(range(len(item.class_names) or len(item.probabilities)))
        ui.select(
            st,
            "True class (for Correct)",
            classes,
            "fb_true_class",
            format_func=lambda i: class_label(item, i),
        )
        st.text_input("Tags (comma-separated)", key="fb_tags", placeholder="blurry, ambiguous")
        st.text_input("Note", key="fb_note")
        a, b, c = st.columns(3)
        confirm = a.form_submit_button(
            "Confirm (Y)", key="fb_confirm", shortcut="y", type="primary", icon=":material/check:"
        )
        correct = b.form_submit_button(
            "Correct (E)", key="fb_correct", shortcut="e", icon=":material/edit:"
        )
        reject = c.form_submit_button(
            "Reject as noise (N)", key="fb_reject", shortcut="n", icon=":material/block:"
        )
    verdict = "confirmed" if confirm else "corrected" if correct else "rejected" if reject else None
    if verdict is None:
        return None
    annotation = AnnotationInput(
        verdict=verdict,
        true_class=st.session_state["fb_true_class"] if verdict == "corrected" else None,
        tags=st.session_state["fb_tags"].split(","),
        note=st.session_state["fb_note"],
        num_classes=len(item.class_names) or None,
    )
    saved = ui.act(annotate_feedback, feedback_id=item.row.id, annotation=annotation)
    return verdict if saved else None


def history(item: ReviewItem) -> None:
    rows = ui.read(annotation_history, feedback_id=item.row.id)
    if not rows:
        return
    with st.expander(f"Verdict history ({len(rows)})"):
        for a in reversed(rows):
            st.markdown(
                f"{ui.badge(a.verdict)} {shown_class(item, a.true_class)} by "
                f"**{ui.md_text(a.author)}** on {ui.when(a.created_at)}"
                + (" (current)" if a.is_current else "")
                + (f" · tags: {ui.md_text(', '.join(a.tags))}" if a.tags else "")
                + (f" · {ui.md_text(a.note)}" if a.note else "")
            )


def item_panel(item: ReviewItem) -> str | None:
    """Draw the item and its form; returns the verdict stored on this run, if any."""
    picture, details = st.columns([1, 3])
    with picture:
        image = input_image(item.input_path)
        if image is None:
            st.caption("The input image is not stored.")
        else:
            st.image(image, caption=f"feedback #{item.row.id}")
    with details:
        what_was_said(item)
        st.plotly_chart(
            charts.probability_bars(
                item.probabilities,
                item.class_names,
                predicted=item.row.predicted_class,
                claimed=item.row.claimed_class,
            ),
            key="fb_probs",
            config={"displayModeBar": False},
        )
    verdict = verdict_form(item)
    history(item)
    return verdict
