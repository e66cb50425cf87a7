"""The report's charts: one inline <svg> each, deterministic, with the elements the data asks for."""

from __future__ import annotations

import re

from medtransfer.report.charts import Bar, bar_chart, curve_chart, heat_map, palette
from medtransfer.report.curves import CurvePoint

BARS = [Bar("d1", "a", 0.8, 0.7, 0.9), Bar("d1", "b", 0.6, 0.5, 0.7), Bar("d2", "a", 0.55)]


def test_bar_chart_is_one_svg_element_and_the_same_each_time() -> None:
    svg = bar_chart(BARS, metric="auc", title="linear")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "<?xml" not in svg
    assert svg == bar_chart(BARS, metric="auc", title="linear")  # no date, fixed ids: same store, same page
    assert "auc (%)" in svg and ">d1<" in svg and ">d2<" in svg  # text kept as text (svg.fonttype none)
    assert len(re.findall(r'<g id="patch_\d+"', svg)) >= 3  # three bars (plus the axes' background patches)


def test_qw_kappa_is_drawn_as_is_and_colours_follow_the_model() -> None:
    svg = bar_chart([Bar("d", "m", 0.42)], metric="qw_kappa", title="t", colours={"m": "#123456"})
    assert "qw_kappa<" in svg and "(%)" not in svg and "#123456" in svg
    assert palette(["a", "b"]) == {"a": "#1f77b4", "b": "#ff7f0e"}  # tab10's first two


def test_curves_draw_a_band_only_where_every_point_has_an_interval() -> None:
    with_band = {"a": [CurvePoint(0.1, 0.6, 0.0, (0,), 0.5, 0.7), CurvePoint(1.0, 0.8, 0.0, (0,), 0.7, 0.9)]}
    without = {"a": [CurvePoint(0.1, 0.6, 0.0, (0,)), CurvePoint(1.0, 0.8, 0.0, (0,))]}
    assert "PolyCollection" in curve_chart(with_band, metric="auc", title="t")
    assert "PolyCollection" not in curve_chart(without, metric="auc", title="t")
    assert ">10%<" in curve_chart(without, metric="auc", title="t")


def test_heat_map_annotates_each_stored_cell_and_leaves_missing_ones_blank() -> None:
    svg = heat_map({("a", "d1"): 0.812, ("b", "d2"): 0.5}, rows=["a", "b"], columns=["d1", "d2"], metric="auc",
                   title="t")
    assert ">81.2<" in svg and ">50.0<" in svg and svg.count(">nan<") == 0
