"""Overview: one card per channel with its serving versions, live numbers, SLOs and trends."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from core.monitoring import live_slo_misses, summarize
from dashboard import charts, ui
from dashboard.serving_health import show_writer_health
from db.models import utcnow
from db.queries.counting import COUNT_CAP, shown
from db.queries.overview import ChannelHealth, TrendPoint, channel_health, hourly_traffic


def slo_misses(c: ChannelHealth) -> tuple[list[str], list[str]]:
    """Missed and undecidable objectives on the production arm's last 24 h."""
    return live_slo_misses(
        c.production_live,
        min_accuracy=c.slo_min_accuracy,
        min_feedback=c.slo_min_feedback,
        max_p95_ms=c.slo_max_p95_ms,
        max_error_rate=c.slo_max_error_rate,
    )


def to_review_total(channels: list[ChannelHealth]) -> str:
    """The sum of the channels' (capped) counts; "+" when any of them reached the cap."""
    total = sum(min(c.pending_feedback, COUNT_CAP) for c in channels)
    return f"{total:,}+" if any(c.pending_feedback > COUNT_CAP for c in channels) else f"{total:,}"


def summary(channels: list[ChannelHealth]) -> None:
    missing = [c for c in channels if c.open_alerts or slo_misses(c)[0]]
    ui.metric_row(
        [
            (
                "Active channels",
                f"{sum(c.status == 'active' for c in channels)} of {len(channels)}",
            ),
            ("Requests 24 h", f"{sum(c.requests_24h for c in channels):,}"),
            (
                "To review",
                shown(sum(c.pending_feedback for c in channels), COUNT_CAP * len(channels)),
            ),
            ("Retrains active", str(sum(c.active_jobs for c in channels))),
            ("Missing an SLO (live, 24 h)", str(len(missing))),
        ]
    )


def versions_cell(c: ChannelHealth) -> None:
    if c.production_version_id is None:
        st.markdown("**Production:** none yet")
    else:
        st.page_link(
            ui.MODELS,
            query_params={"version": c.production_version_id},
            label=f"Production v{c.production_version} · "
            f"{ui.pct(c.production_accuracy)} offline accuracy",
            icon=":material/verified:",
        )
    if c.candidate_version_id is not None:
        st.page_link(
            ui.MODELS,
            query_params={"version": c.candidate_version_id},
            label=f"Candidate v{c.candidate_version} · {c.candidate_traffic:.0%} of traffic",
            icon=":material/science:",
        )


def links_cell(c: ChannelHealth) -> None:
    st.page_link(
        "views/monitoring.py",
        query_params={"channel": c.slug},
        label="Live monitoring",
        icon=":material/monitoring:",
    )
    st.page_link(
        ui.FEEDBACK,
        query_params={"channel": c.id},
        label=f"{shown(c.pending_feedback)} feedback to review",
        icon=":material/rate_review:",
    )
    st.page_link(
        ui.JOBS, label=f"{c.active_jobs} retrain(s) active", icon=":material/work_history:"
    )
    st.page_link(
        ui.CHANNELS,
        query_params={"channel": c.slug},
        label="Channel settings",
        icon=":material/settings:",
    )


def last_hours(trend: list[TrendPoint], hours: int = 24) -> tuple[list[str], list[int]]:
    """Requests for each of the last `hours` UTC hours, zero where there were none."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    starts = [now - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    counts = {p.hour: p.requests for p in trend}
    return [f"{t:%Y-%m-%d %H:00}" for t in starts], [counts.get(t, 0) for t in starts]


def live_cell(c: ChannelHealth, trend: list[TrendPoint]) -> None:
    live = summarize(c.production_live)
    simulated = c.simulated_24h
    a, b, d = st.columns(3)
    a.metric("Requests 24 h", f"{c.requests_24h:,}",
             help=f"{simulated:,} of them simulated" if simulated else None)  # fmt: skip
    b.metric("p95 latency (production, 24 h)", ui.ms(live.p95_ms),
             help=f"SLO: ≤ {ui.ms(c.slo_max_p95_ms)}; {live.requests:,} requests")  # fmt: skip
    d.metric("Thumbs up (24 h)", ui.share_of(live.thumbs_up_share, live.thumbs),
             help="Thumbs up among the production arm's ratings in 24 h, of that many")  # fmt: skip
    if simulated:
        st.caption(f"{simulated:,} of {c.requests_24h:,} requests in 24 h were simulated.")
    if trend:
        fig = charts.sparkline(*last_hours(trend), title="requests per hour, last 24 h (UTC)")
        st.plotly_chart(fig, key=f"trend-{c.id}", config={"displayModeBar": False})
    else:
        st.caption("No traffic in the last 24 hours.")


def slo_badge(c: ChannelHealth) -> str:
    """Open alerts first; else live objectives missed, undecidable, or met (24 h)."""
    if c.open_alerts:
        signals = ", ".join(sorted({a.signal for a in c.open_alerts}))
        return f":red-badge[{len(c.open_alerts)} open alert(s): {signals}]"
    missed, unknown = slo_misses(c)
    if missed:
        return f":red-badge[misses SLO: {'; '.join(missed)}]"
    if unknown:
        return f":gray-badge[SLO: not enough live data ({'; '.join(unknown)})]"
    return ":green-badge[SLO met (live, 24 h)]"


def channel_card(c: ChannelHealth, trend: list[TrendPoint]) -> None:
    with st.container(border=True):
        model = f" · {c.model_name}" if c.model_name else ""
        st.markdown(
            f"#### {ui.md_text(c.name)} `{c.slug}`{model} {ui.badge(c.status)} {slo_badge(c)}"
        )
        if c.status == "paused" and c.status_reason:
            st.caption(f"Paused: {c.status_reason}")
        for alert in c.open_alerts:
            st.warning(f"{ui.when(alert.opened_at)} · {alert.signal}", icon=":material/warning:")
            st.text(alert.message)
        left, right = st.columns([1, 2])  # room for "Production v12 · 100.0% offline accuracy"
        with left:
            versions_cell(c)
            links_cell(c)
        with right:
            live_cell(c, trend)


def main() -> None:
    ui.page_header("Overview", "Every channel, the version it serves, and how it is doing now.")
    show_writer_health()  # first: it matters most when the registry refuses writes
    try:
        channels = ui.read(channel_health)
        trends = ui.read(hourly_traffic, hours=24)
    except Exception as exc:  # noqa: BLE001 - the page must show a message, not a traceback
        ui.show_failure("read the registry", exc)
        return
    if not channels:
        st.info("No channels yet. Create one on the Channels page or run `channelhub demo`.")
        st.page_link(ui.CHANNELS, label="Create a channel", icon=":material/add:")
        return
    summary(channels)
    for c in channels:
        channel_card(c, [p for p in trends if p.channel_id == c.id])


main()
