"""The report's charts, drawn by matplotlib (Agg, outside pyplot) as inline SVG text.

Every chart takes plain numbers (already read from the store) and returns one ``<svg>`` element: bars with
their 95% intervals as error bars, label-efficiency curves with the interval as a band, a models × datasets heat
map. SVG keeps the page one file that zooms without blur; ids are salted by a fixed string and the date left out,
so the same store gives the same page byte for byte.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medtransfer.report.curves import CurvePoint
from medtransfer.report.tables import display_scale

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_WIDTH_PER_GROUP = 0.8  # share of one x slot the grouped bars fill


@dataclass(frozen=True)
class Bar:
    """One bar: a model's value on one dataset, with its interval (None: no interval stored)."""

    group: str
    model: str
    value: float
    low: float | None = None
    high: float | None = None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig: Figure) -> str:
    """The figure as one ``<svg>`` element (no XML prolog, no date, deterministic ids)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "medtransfer", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def palette(models: Sequence[str]) -> dict[str, str]:
    """One colour per model (tab10, tab20 beyond ten), so a model keeps its colour in every chart of a page."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: to_hex(cmap(i % cmap.N)) for i, m in enumerate(models)}


def bar_chart(bars: Sequence[Bar], *, metric: str, title: str, colours: Mapping[str, str] | None = None) -> str:
    """Grouped bars (x: groups, e.g. datasets; one colour per model, `colours` or `palette`'s) with 95% error
    bars."""
    scale, _ = display_scale(metric)
    groups = list(dict.fromkeys(b.group for b in bars))
    models = list(dict.fromkeys(b.model for b in bars))
    fig = _figure(max(4.5, 1.1 * len(groups) * max(1, len(models)) ** 0.5 + 2), 3.4)
    ax = fig.add_subplot()
    width = _WIDTH_PER_GROUP / max(1, len(models))
    colours = colours or palette(models)
    for k, model in enumerate(models):
        mine = {b.group: b for b in bars if b.model == model}
        x = np.array([i for i, g in enumerate(groups) if g in mine], dtype=float)
        here = [mine[g] for g in groups if g in mine]
        values = np.array([scale * b.value for b in here])
        err = np.array([[scale * (b.value - b.low) if b.low is not None else 0.0 for b in here],
                        [scale * (b.high - b.value) if b.high is not None else 0.0 for b in here]])
        offset = (k - (len(models) - 1) / 2) * width
        ax.bar(x + offset, values, width * 0.95, yerr=np.clip(err, 0, None), capsize=3, label=model,
               color=colours[model],
               error_kw={"elinewidth": 1, "ecolor": "#333"})
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 3 else 0, ha="right" if len(groups) > 3
                  else "center")
    ax.set_ylabel(_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_svg(fig)


def curve_chart(curves: Mapping[str, Sequence[CurvePoint]], *, metric: str, title: str,
                colours: Mapping[str, str] | None = None) -> str:
    """Metric vs label fraction (log x), one line per model, its 95% interval as a band where stored."""
    scale, _ = display_scale(metric)
    fig = _figure(5.6, 3.4)
    ax = fig.add_subplot()
    fractions: set[float] = set()
    colours = colours or palette(list(curves))
    for model, points in curves.items():
        colour = colours[model]
        x = np.array([p.fraction for p in points])
        fractions.update(x.tolist())
        ax.plot(x, [scale * p.mean for p in points], marker="o", ms=4, color=colour, label=model)
        if all(p.ci_low is not None and p.ci_high is not None for p in points):
            ax.fill_between(x, [scale * p.ci_low for p in points],  # type: ignore[operator]
                            [scale * p.ci_high for p in points], color=colour, alpha=0.18, lw=0)  # type: ignore
    ax.set_xscale("log")
    ticks = sorted(fractions)
    ax.set_xticks(ticks, [f"{100 * f:g}%" for f in ticks])
    ax.minorticks_off()
    ax.set_xlabel("share of training labels")
    ax.set_ylabel(_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_svg(fig)


def heat_map(values: Mapping[tuple[str, str], float], *, rows: Sequence[str], columns: Sequence[str], metric: str,
             title: str) -> str:
    """A rows × columns (models × datasets) grid of one metric, each cell annotated; missing cells blank."""
    scale, digits = display_scale(metric)
    grid = np.full((len(rows), len(columns)), np.nan)
    for (r, c), v in values.items():
        grid[rows.index(r), columns.index(c)] = scale * v
    fig = _figure(max(4.0, 1.2 * len(columns) + 2.5), max(2.2, 0.45 * len(rows) + 1.4))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if not math.isnan(v):
            lo, hi = np.nanmin(grid), np.nanmax(grid)
            light = hi == lo or (v - lo) / (hi - lo) < 0.6
            ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize=8, color="white" if light else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=20 if len(columns) > 3 else 0,
                  ha="right" if len(columns) > 3 else "center")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=_label(metric), shrink=0.9)
    return to_svg(fig)


def _label(metric: str) -> str:
    scale, _ = display_scale(metric)
    return f"{metric} (%)" if scale == 100 else metric
