"""Plotly figure builders: pure functions from plain data to figures, no Streamlit."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2")


def label(value: object) -> str:
    """A class name as a Plotly label: Plotly renders some HTML tags in labels (<a>, <b>, <br>),
    so untrusted names are escaped and show as typed."""
    return html.escape(str(value), quote=False)


def _compact(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def sparkline(x: Sequence[Any], y: Sequence[float], *, title: str = "") -> go.Figure:
    """Small bars without axis clutter, for trend cells (bars stay visible for one point)."""
    fig = go.Figure(go.Bar(x=list(x), y=list(y), marker_color=PALETTE[0]))
    fig.update_layout(title={"text": title, "font": {"size": 12}}, showlegend=False, bargap=0.15)
    fig.update_xaxes(showgrid=False, showticklabels=False)
    fig.update_yaxes(showgrid=False, rangemode="tozero", nticks=3)
    return _compact(fig, 130)


def per_class_bars(per_class: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Precision, recall and F1 per class, grouped."""
    names = [label(c.get("name", c.get("class"))) for c in per_class]
    fig = go.Figure()
    for metric, colour in zip(("precision", "recall", "f1"), PALETTE, strict=False):
        fig.add_bar(
            name=metric, x=names, y=[c.get(metric, 0.0) for c in per_class], marker_color=colour
        )
    fig.update_layout(
        barmode="group",
        yaxis={"range": [0, 1.05], "title": "score"},
        xaxis={"title": "class", "type": "category"},
    )
    return _compact(fig, 320)


def confusion_heatmap(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """Counts of true (rows) against predicted (columns) classes."""
    names = [label(n) for n in class_names] or [str(i) for i in range(len(matrix))]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_xaxes(title="predicted", type="category")
    fig.update_yaxes(title="true", type="category", autorange="reversed")
    return _compact(fig, 420)


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> go.Figure:
    """Loss and accuracy per epoch (train solid, validation dashed), one colour per run."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for i, (label, rows) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        epochs = [r.get("epoch", n + 1) for n, r in enumerate(rows)]
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, dash in (("", "solid"), ("val_", "dash")):
                values = [r.get(prefix + metric) for r in rows]
                if all(v is None for v in values):
                    continue
                fig.add_scatter(
                    x=epochs,
                    y=values,
                    mode="lines+markers",
                    row=1,
                    col=col,
                    name=f"{label} {prefix}{metric}",
                    legendgroup=label,
                    line={"color": colour, "dash": dash},
                )
    fig.update_xaxes(title="epoch")
    return _compact(fig, 340)


def per_class_delta(
    base: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]], metric: str = "f1"
) -> go.Figure:
    """Per-class change of `metric` from `base` to `other` (green better, red worse)."""
    by_class = {c["class"]: c for c in base}
    names, deltas = [], []
    for c in other:
        if c["class"] in by_class:
            names.append(label(c.get("name", c["class"])))
            deltas.append(c.get(metric, 0.0) - by_class[c["class"]].get(metric, 0.0))
    colours = ["#16a34a" if d >= 0 else "#dc2626" for d in deltas]
    fig = go.Figure(go.Bar(x=names, y=deltas, marker_color=colours))
    fig.update_layout(
        xaxis={"title": "class", "type": "category"},
        yaxis={"title": f"Δ {metric}", "tickformat": "+.1%"},
    )
    return _compact(fig, 280)


def probability_bars(
    probabilities: Sequence[float],
    class_names: Sequence[str],
    *,
    predicted: int | None = None,
    claimed: int | None = None,
) -> go.Figure:
    """The model's class probabilities; the predicted class blue, the user's claim orange."""
    names = [label(n) for n in class_names] or [str(i) for i in range(len(probabilities))]
    colours = [
        PALETTE[0] if i == predicted else PALETTE[1] if i == claimed else "#cbd5e1"
        for i in range(len(probabilities))
    ]
    fig = go.Figure(
        go.Bar(x=names[: len(probabilities)], y=list(probabilities), marker_color=colours)
    )
    fig.update_layout(
        xaxis={"title": "class", "type": "category"},
        yaxis={"title": "probability", "range": [0, 1]},
    )
    return _compact(fig, 240)


def metric_comparison(rows: Mapping[str, Mapping[str, float | None]]) -> go.Figure:
    """Headline metrics per version, grouped by metric."""
    fig = go.Figure()
    for i, (label, metrics) in enumerate(rows.items()):
        fig.add_bar(
            name=label,
            x=list(metrics),
            y=[v or 0.0 for v in metrics.values()],
            marker_color=PALETTE[i % len(PALETTE)],
        )
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.05]})
    return _compact(fig, 300)
