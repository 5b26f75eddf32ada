"""The channel's timeline on the Channels page: the running stepped canary (and a form to start
one), then serving changes and canary decisions newest first with their reasons, each earlier
production version with a Restore button."""

from __future__ import annotations

import streamlit as st

from core.actions.canary import (
    DEFAULT_MIN_REQUESTS,
    DEFAULT_MIN_SECONDS,
    DEFAULT_STEPS,
    restore_version,
    start_canary_plan,
)
from dashboard import gate_view, ui
from db.queries.gate import gate_decisions_by_id
from db.queries.lookups import ChannelInfo
from db.queries.registry import version_choices
from db.queries.timeline import CanaryState, TimelineEntry, canary_state, channel_timeline

ICONS = {
    "canary.advance": ":material/trending_up:",
    "canary.hold": ":material/pause_circle:",
    "canary.rollback": ":material/undo:",
    "canary.promote": ":material/verified:",
    "channel.promote": ":material/verified:",
    "channel.restore": ":material/history:",
    "channel.start_canary": ":material/call_split:",
    "channel.end_canary": ":material/call_merge:",
    "canary.start": ":material/science:",
    "gate.refuse": ":material/block:",
}


def canary_summary(state: CanaryState) -> None:
    plan = state.canary
    steps = " → ".join(f"{s:g}" for s in plan.steps)
    st.markdown(
        f"**Canary** {ui.md_text(state.candidate_label)} · {plan.step_label} · steps {steps} % · "
        f"{plan.min_requests} requests per arm and {plan.min_seconds / 60:g} min per step"
    )
    st.progress((plan.step_index + 1) / len(plan.steps))
    last = state.last_decision
    if last is not None:
        st.caption(f"Last decision: **{last.decision}** — {ui.md_text(last.reason)}")
    else:
        st.caption("The controller has not judged this step yet.")


def other_versions(c: ChannelInfo) -> dict[int, str]:
    """The channel's model's versions but its production one (the actions refuse to promote it
    again or to put it in a canary): id -> label."""
    options = dict(ui.read(version_choices, model_id=c.model_id))
    options.pop(c.production_version_id, None)
    return options


def start_form(c: ChannelInfo) -> None:
    """Start a stepped canary; the controller takes it from there."""
    options = other_versions(c)
    with st.form(f"tl-canary-{c.slug}"):
        version = ui.optional_select(st, "Candidate", options, "tl_candidate", "—")
        a, b, d = st.columns(3)
        steps = a.text_input("Steps (%)", ",".join(f"{s:g}" for s in DEFAULT_STEPS),
                             key="tl_steps")  # fmt: skip
        requests = b.number_input("Requests per arm", min_value=1, value=DEFAULT_MIN_REQUESTS,
                                  key="tl_min_requests")  # fmt: skip
        minutes = d.number_input("Minutes per step", min_value=0.0,
                                 value=DEFAULT_MIN_SECONDS / 60, key="tl_min_minutes")  # fmt: skip
        override = st.text_input("Override reason (only if the promotion gate refuses it)",
                                 key="tl_override", placeholder="optional")  # fmt: skip
        go = st.form_submit_button("Start stepped canary", key="tl_start", **ui.gate("manager"))
    if go and version is None:
        st.error("Choose a candidate version.")
    elif go:
        done = ui.act(
            start_canary_plan, slug=c.slug, version_id=version, steps=steps,
            min_requests=int(requests), min_seconds=round(minutes * 60), override_reason=override,
        )  # fmt: skip
        if not done:
            gate_view.gate_check(c, version, "channel.start_canary", "tl_gate", False)
        if done:
            ui.flash(f"Canary of {options[version]} started at {done.traffic:.0%}.")
            st.rerun()


def entry_line(e: TimelineEntry) -> str:
    reason = f" — {ui.md_text(e.reason)}" if e.reason else ""
    title, actor = ui.md_text(e.title), ui.md_text(e.actor)
    return f"{ui.when(e.at)} · {ICONS.get(e.action, '')} **{title}** · {actor}{reason}"


def restore_button(c: ChannelInfo, e: TimelineEntry, column, reason: str) -> None:
    label = f"Restore v{e.production_version_id}"
    key = f"tl_restore_{e.production_version_id}"
    if column.button(label, key=key, icon=":material/history:", **ui.gate("manager")):
        if ui.act(restore_version, slug=c.slug, version_id=e.production_version_id, reason=reason):
            ui.flash(f"Restored version {e.production_version_id} on {c.slug}.")
            st.rerun()


def channel_timeline_section(c: ChannelInfo) -> None:
    """The canary, its start form and the timeline with one Restore per earlier version."""
    state = ui.read(canary_state, slug=c.slug)
    entries = ui.read(channel_timeline, slug=c.slug, limit=50)
    with st.container(border=True):
        st.markdown("**Timeline**")
        if state is not None:
            canary_summary(state)
        elif c.model_id is not None and c.production_version_id is not None:
            with st.expander("Start a stepped canary"):
                start_form(c)
        if not entries:
            st.caption("No serving changes yet.")
            return
        reason = st.text_input("Reason for a restore", key="tl_reason", placeholder="required")
        gated = tuple(sorted({e.gate_decision_id for e in entries if e.gate_decision_id}))
        decisions = ui.read(gate_decisions_by_id, ids=gated) if gated else {}
        offered: set[int] = set()
        for e in entries:
            text, button = st.columns([6, 1])
            text.markdown(entry_line(e))
            if e.gate_decision_id in decisions:
                with text:
                    gate_view.stored_decision(decisions[e.gate_decision_id], f"tl_gate_{e.at}")
            version = e.production_version_id
            if version and version != c.production_version_id and version not in offered:
                offered.add(version)
                restore_button(c, e, button, reason)
