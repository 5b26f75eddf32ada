"""Loop: per channel, alerts → to review → annotated, not learned → retrain → canary →
production, each with its number and at most one primary action."""

from __future__ import annotations

import functools
import time

import streamlit as st

from core.actions.channels import promote_version
from core.actions.jobs import retrain_channel
from dashboard import ui
from db.queries.counting import shown
from db.queries.loop import ChannelLoop, channel_loops
from db.queries.timeline import CanaryState, canary_states

STAGES = ("Alerts", "To review", "Annotated, not learned", "Retrain", "Canary", "Production")
# The page redraws itself this often while a retrain or a stepped canary moves, and for
# LIVE_GRACE_S after the last movement it saw (the controller hands a finished version to the
# gate in between), so nobody reloads to see the job finish or the canary advance.
LIVE_REFRESH_S = 3.0
LIVE_GRACE_S = 120.0


def _card(column, title: str, number: str, state: str):
    box = column.container(border=True)
    box.caption(title)
    box.markdown(f"### {number}")
    box.caption(state)
    return box


def alerts_stage(column, c: ChannelLoop) -> None:
    signals = ", ".join(sorted({a.signal for a in c.alerts}))
    box = _card(column, STAGES[0], str(len(c.alerts)), signals or "none open")
    if c.alerts:
        box.page_link(
            ui.CHANNELS,
            label="See alerts",
            query_params={"channel": c.slug},
            icon=":material/warning:",
        )


def review_stage(column, c: ChannelLoop) -> None:
    box = _card(column, STAGES[1], shown(c.to_review), f"{shown(c.to_review_down)} thumbs down")
    if c.to_review:
        box.page_link(
            ui.FEEDBACK,
            label=f"Review {shown(c.to_review)}",
            icon=":material/rate_review:",
            query_params={"channel": c.slug, "back": "loop"},  # accepting returns here
        )


def learn_stage(column, c: ChannelLoop) -> None:
    n = c.annotated_not_learned
    # A retrain learns all of its model's annotated items, whichever channel they came from.
    of = f" for {c.model_name} (every channel it serves)" if c.model_name else ""
    box = _card(column, STAGES[2], shown(n), f"confirmed or corrected{of}, waiting for a retrain")
    busy = c.retrain is not None
    if n and c.production_version_id and ui.allowed("manager"):
        canary = box.checkbox("canary when done", value=True, key=f"loop_canary_{c.slug}")
        if box.button(
            f"Retrain with {shown(n)} items",
            key=f"loop_retrain_{c.slug}",
            type="primary",
            disabled=busy,
            help="A retrain is already running" if busy else None,
        ):
            if ui.act(retrain_channel, slug=c.slug, then_canary=canary):
                ui.flash(f"Queued a fine-tune of {c.slug}'s production version.")
                st.rerun()
    elif n:
        box.caption(ui.why_not("manager") or "the channel serves no version yet")


LAST_OUTCOMES = {
    "failed": "failed",
    "cancelled": "was cancelled",
    "lost": "was lost (its worker stopped)",
    "refused": "refused by the gate",
    "no canary": "not put in a canary",
    "ready": "ready (no canary asked)",
}


def last_retrain(column, c: ChannelLoop) -> None:
    """No retrain running: say what became of the last one when it put nothing in a canary."""
    last = c.last_retrain
    if last is None:
        _card(column, STAGES[3], "—", "no retrain running")
        return
    made = f" → v{last.version}" if last.version is not None else ""
    box = _card(column, STAGES[3], "—", f"last: job #{last.job_id}{made} "
                f"{LAST_OUTCOMES.get(last.outcome, last.outcome)}")  # fmt: skip
    for why in last.why[:3]:
        box.caption(ui.md_text(why))
    if last.outcome == "refused":  # the evidence, and the override, are on the channel's page
        box.page_link(ui.CHANNELS, label="Evidence", query_params={"channel": c.slug},
                      icon=":material/fact_check:")  # fmt: skip
        # The refused version learned the annotated items, so the Annotated card offers no
        # "Retrain with N items": another try, with other settings, starts here.
        ui.retrain_link(c.slug, c.production_version_id, "Try again", where=box)
    else:
        ui.job_link(last.job_id, "Open job", where=box)


def retrain_stage(column, c: ChannelLoop) -> None:
    r = c.retrain
    if r is None:
        last_retrain(column, c)
        return
    box = _card(
        column,
        STAGES[3],
        f"job #{r.job_id}",
        f"{r.status} · epoch {r.current_epoch}/{r.total_epochs}"
        + (" · canary when done" if r.then_canary else ""),
    )
    box.progress(min(max(r.progress, 0.0), 1.0))
    ui.job_link(r.job_id, "Watch", where=box)


def canary_stage(column, c: ChannelLoop, plan: CanaryState | None) -> None:
    if c.candidate_version_id is None:
        _card(column, STAGES[4], "—", "no candidate")
        return
    if plan is None:
        state = f"{c.candidate_traffic:.0%} of traffic, fixed share (no stepped plan)"
    else:
        steps = " → ".join(f"{s:g}" for s in plan.canary.steps)
        last = plan.last_decision
        state = (
            f"{c.candidate_traffic:.0%} of traffic, step {plan.canary.step_index + 1} of "
            f"{len(plan.canary.steps)} ({steps} %)"
            + (f" · {last.decision}: {last.reason}" if last else " · waiting for traffic")
        )
    box = _card(column, STAGES[4], f"v{c.candidate_version}", state)
    if ui.allowed("manager") and box.button(
        "Promote now", key=f"loop_promote_{c.slug}", help="Skip the remaining canary steps"
    ):
        if ui.act(
            promote_version,
            slug=c.slug,
            version_id=c.candidate_version_id,
            reason="promoted from the loop view",
        ):
            st.rerun()


def production_stage(column, c: ChannelLoop) -> None:
    if c.production_version_id is None:
        _card(column, STAGES[5], "—", "nothing served yet")
        return
    since = f"since {ui.when(c.production_since)}" if c.production_since else "since creation"
    box = _card(column, STAGES[5], f"v{c.production_version}", since)
    # A short label: the card is a sixth of the page wide, and a longer one was cut off.
    ui.version_link(
        c.production_version_id, f"Open v{c.production_version}", ":material/verified:", where=box
    )


def channel_row(c: ChannelLoop, plan: CanaryState | None) -> None:
    st.markdown(f"#### {ui.md_text(c.name)} `{c.slug}`")
    columns = st.columns(len(STAGES))
    canary = functools.partial(canary_stage, plan=plan)
    for stage, column in zip(
        (alerts_stage, review_stage, learn_stage, retrain_stage, canary, production_stage),
        columns,
        strict=True,
    ):
        stage(column, c)


def watching(loops: list[ChannelLoop], plans: dict[int, CanaryState]) -> bool:
    """True while a retrain runs or awaits its canary, or a stepped canary runs, and for
    LIVE_GRACE_S after that was last seen in this browser session."""
    now = time.monotonic()
    if any(c.retrain is not None or c.id in plans for c in loops):
        st.session_state["loop_live_until"] = now + LIVE_GRACE_S
    return now < st.session_state.get("loop_live_until", 0.0)


def rows(live: bool = False) -> None:
    """Every channel's row; a live redraw that sees nothing moving any more redraws the whole
    page once, which stops the polling."""
    loops = ui.read_fresh(channel_loops)
    if not loops:
        st.info("No channels yet.")
        return
    plans = ui.read_fresh(canary_states)
    if live and not watching(loops, plans):
        st.rerun()
    # Channels with open alerts first: that is where the loop needs a manager now.
    for c in sorted(loops, key=lambda c: (-len(c.alerts), c.slug)):
        channel_row(c, plans.get(c.id))


def main() -> None:
    ui.page_header("Loop", "From wrong predictions to a fixed version serving the channel.")
    if watching(ui.read_fresh(channel_loops), ui.read_fresh(canary_states)):
        st.fragment(rows, run_every=LIVE_REFRESH_S)(live=True)
    else:
        rows()


main()
