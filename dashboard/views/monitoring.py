"""Monitoring: a channel's live signals per arm over a window, from rollups only."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.ml import monitoring_stats as stats
from core.monitoring import MIN_ANNOTATED_FOR_ACCURACY, ArmSummary, summarize
from dashboard import charts, ui
from dashboard.charts import PALETTE
from db.queries.monitoring import DEFAULT_WINDOW, WINDOWS, ArmSeries, channel_monitoring
from db.queries.timeline import version_labels

ARM_ORDER = ("production", "candidate")


def accuracy_note(a: ArmSummary) -> str:
    """What the accuracy figure rests on: its interval and sample size, or why there is none."""
    if a.accuracy is None:
        return "Accuracy: no annotated feedback in this window."
    low, high = a.accuracy_interval or (0.0, 0.0)
    few = " Too few to judge." if a.annotated < MIN_ANNOTATED_FOR_ACCURACY else ""
    return f"Accuracy: 95 % interval {low:.0%}–{high:.0%}, n={a.annotated} annotated items.{few}"


def arm_cards(series: ArmSeries, window: str, labels: dict[int, str]) -> None:
    a = summarize(series.total)
    names = ", ".join(labels.get(v, f"version id {v}") for v in sorted(series.total.versions))
    st.subheader(f"{series.arm} · {names}")
    simulated = f" ({a.simulated:,} simulated)" if a.simulated else ""
    st.caption(f"Last {window}: {a.requests:,} requests{simulated}, {a.errors:,} errors.")
    ui.metric_row(
        [
            ("requests", f"{a.requests:,}"),
            ("error rate", "—" if a.error_rate is None else f"{a.error_rate:.1%}"),
            ("p50", ui.ms(a.p50_ms)),
            ("p95", ui.ms(a.p95_ms)),
        ]
    )
    up = ui.share_of(a.thumbs_up_share, a.thumbs)
    ui.metric_row([("thumbs up", up), ("accuracy on annotated feedback", ui.pct(a.accuracy))])
    st.caption(accuracy_note(a))


def over_time(arms: dict[str, ArmSeries]) -> go.Figure:
    """Requests (bars) and p95 latency (lines) per drawn bucket, one colour per arm."""
    fig = go.Figure()
    for colour, arm in zip(PALETTE, ARM_ORDER, strict=False):
        if arm not in arms:
            continue
        buckets = sorted(arms[arm].buckets.items())
        x = [start for start, _ in buckets]
        summaries = [summarize(s) for _, s in buckets]
        fig.add_bar(x=x, y=[a.requests for a in summaries], name=f"{arm} requests",
                    marker_color=colour, opacity=0.5)  # fmt: skip
        fig.add_scatter(x=x, y=[a.p95_ms for a in summaries], name=f"{arm} p95 ms",
                        yaxis="y2", line={"color": colour})  # fmt: skip
    fig.update_layout(
        height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, barmode="group",
        yaxis={"title": "requests"},
        # Round latency ticks from 0 (synced to the requests gridlines they read 1.55, 3.5, 5.46).
        yaxis2={"title": "p95 ms", "overlaying": "y", "side": "right", "tickmode": "auto",
                "rangemode": "tozero", "showgrid": False},
        legend={"orientation": "h"},
    )  # fmt: skip
    return fig


def distributions(arms: dict[str, ArmSeries], class_names: list[str]) -> None:
    """Confidence distribution and predicted-class mix, as shares so the arms compare."""
    conf_labels = [f"{e:.1f}" for e in stats.CONFIDENCE_BINS[:-1]]
    left, right = st.columns(2)
    confidence, mix = go.Figure(), go.Figure()
    for colour, arm in zip(PALETTE, ARM_ORDER, strict=False):
        if arm not in arms:
            continue
        total = arms[arm].total
        n_conf, n_cls = sum(total.confidence_hist) or 1, sum(total.class_counts) or 1
        confidence.add_bar(x=conf_labels, y=[c / n_conf for c in total.confidence_hist],
                           name=arm, marker_color=colour)  # fmt: skip
        names = [charts.label(class_names[i]) if i < len(class_names) else str(i)
                 for i in range(len(total.class_counts))]  # fmt: skip
        mix.add_bar(x=names, y=[c / n_cls for c in total.class_counts], name=arm,
                    marker_color=colour)  # fmt: skip
    for fig, title in ((confidence, "confidence (share of requests)"),
                       (mix, "predicted class (share of requests)")):  # fmt: skip
        fig.update_layout(title=title, height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                          xaxis={"type": "category"}, yaxis={"tickformat": ".0%"})  # fmt: skip
    left.plotly_chart(confidence, width="stretch")
    right.plotly_chart(mix, width="stretch")


def main() -> None:
    ui.page_header("Monitoring", "Live signals per channel and arm, from the prediction log.")
    channels = ui.channels_or_note()
    if not channels:
        return
    slugs = [c.slug for c in channels]
    chosen = st.query_params.get("channel")
    left, right = st.columns([2, 3])
    slug = ui.select(left, "Channel", slugs, "monitor_channel", default=chosen)
    window = right.segmented_control("Window", list(WINDOWS), default=DEFAULT_WINDOW,
                                     key="monitor_window") or DEFAULT_WINDOW  # fmt: skip
    channel = next(c for c in channels if c.slug == slug)
    data = ui.read(channel_monitoring, channel_id=channel.id, window=window)
    if not data.arms:
        st.info(f"No requests on {slug} in the last {window}.")
        return
    st.caption(
        f"{ui.when(data.since)} → {ui.when(data.until)}, buckets of "
        f"{data.window.bucket_s // 60} min. Counts include simulated traffic where noted."
    )
    ids = frozenset(v for series in data.arms.values() for v in series.total.versions)
    labels = ui.read(version_labels, ids=ids)  # "model vN", as the other pages name versions
    columns = st.columns(len(data.arms))
    for column, arm in zip(columns, [a for a in ARM_ORDER if a in data.arms], strict=True):
        with column:
            arm_cards(data.arms[arm], window, labels)
    st.plotly_chart(over_time(data.arms), width="stretch")
    distributions(data.arms, channel_class_names(channel))


def channel_class_names(channel) -> list[str]:
    from db.queries.lookups import get_dataset

    if channel.dataset_id is None:
        return []
    return ui.read(get_dataset, dataset_id=channel.dataset_id).class_names


main()
