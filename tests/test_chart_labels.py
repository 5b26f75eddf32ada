"""Class names from a dataset folder are untrusted: Plotly would render <a>, <b> or <br> in a
label, so every chart escapes them and shows them as typed."""

from __future__ import annotations

from dashboard import charts

NASTY = '<a href="http://elsewhere.invalid">x</a><b>y</b>'


def test_class_names_are_escaped_in_every_chart():
    names = [NASTY, "cat"]
    bars = charts.probability_bars([0.3, 0.7], names)
    heat = charts.confusion_heatmap([[1, 0], [0, 1]], names)
    per_class = charts.per_class_bars([{"class": 0, "name": NASTY, "precision": 1.0}])
    for fig in (bars, heat, per_class):
        labels = [str(x) for trace in fig.data for x in (trace.x if trace.x is not None else [])]
        assert not any("<a" in x or "<b>" in x for x in labels), labels
        assert any("&lt;a href=" in x for x in labels)
