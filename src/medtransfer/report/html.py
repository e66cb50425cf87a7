"""`medtransfer report runs/x.sqlite -o report.html`: one static, self-contained page from a results store.

The page reads the store (opened read-only) and the figures folder the runner writes beside it
(``runs/x-figures/<cell_id>-*.png``), nothing else: charts are inline SVG drawn by matplotlib, pictures are
embedded PNG, the CSS and the few lines of JavaScript (sortable tables) are inline; no server, no CDN. The same
store gives the same page byte for byte (no generation date; the last cell's finish time is shown instead).

Sections: a ranking of models per dataset and protocol with 95% intervals; per-protocol bar charts with error
bars; label-efficiency curves with interval bands; a models × datasets heat map; paired comparisons (paired
bootstrap over test images where both cells kept per-sample predictions, a paired t-test over seeds otherwise,
Holm-corrected); the analyses' pictures; every result; each cell's provenance.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError
from medtransfer.report import charts
from medtransfer.report.curves import label_efficiency, mean_interval
from medtransfer.report.stats import (
    BOOTSTRAP,
    CORRECTION,
    NO_TEST,
    T_TEST,
    Comparison,
    compare,
    headline_metrics,
    latest_rows,
)
from medtransfer.report.tables import ANALYSIS_PROTOCOLS, display_scale, pivot
from medtransfer.runner.store import ResultStore

Row = Mapping[str, Any]
SECTIONS = ("ranking", "published", "bars", "curves", "heatmap", "comparisons", "figures", "results", "provenance")


@dataclass
class ReportInfo:
    """What `build_report` wrote: the page and the count of each kind of element on it (the browser test
    checks the page against these)."""

    path: Path
    cells: int = 0
    charts: dict[str, int] = field(default_factory=dict)  # kind (bar, curve, heatmap) -> count
    comparisons: int = 0
    images: int = 0
    sections: tuple[str, ...] = ()


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _labels(fraction: float | None) -> str:
    return "100%" if fraction is None else f"{100 * fraction:g}%"


def _num(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    scale, digits = display_scale(metric)
    return f"{scale * value:.{digits}f}"


def _interval(metric: str, low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{_num(metric, low)}, {_num(metric, high)}]"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _full_labels(row: Row) -> bool:
    return row["fraction"] is None or float(row["fraction"]) == 1.0


@dataclass(frozen=True)
class _Summary:
    """One (dataset, protocol, fraction, model) on its headline metric: mean over seeds, mean bootstrap bounds."""

    dataset: str
    protocol: str
    fraction: float | None
    model: str
    metric: str
    mean: float
    low: float | None
    high: float | None
    std: float
    seeds: tuple[int, ...]


def _summaries(rows: Sequence[Row], metrics: Mapping[str, str]) -> list[_Summary]:
    grouped: dict[tuple[str, str, float | None, str], list[Row]] = {}
    for r in rows:
        headline = r["metric"] == metrics.get(r["dataset"])
        if r["split"] == "test" and headline and r["protocol"] not in ANALYSIS_PROTOCOLS:
            fraction = None if _full_labels(r) else float(r["fraction"])
            grouped.setdefault((r["dataset"], r["protocol"], fraction, r["model"]), []).append(r)
    out = []
    for (dataset, protocol, fraction, model), group in grouped.items():
        group = sorted(group, key=lambda r: r["seed"])
        v = np.array([r["value"] for r in group], dtype=np.float64)
        mean, low, high = mean_interval(group)
        out.append(_Summary(dataset, protocol, fraction, model, metrics[dataset], mean, low, high,
                            float(v.std(ddof=1)) if len(v) > 1 else 0.0, tuple(int(r["seed"]) for r in group)))
    return out


# ---------------------------------------------------------------- sections


def _table(head: Sequence[str], body: Iterable[Sequence[str]], *, cls: str = "", raw: bool = False) -> str:
    """A sortable table; cells are escaped unless `raw` (then they are HTML already)."""
    cell = (lambda x: x) if raw else _e
    rows = "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in r) + "</tr>" for r in body)
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<table class="sortable {cls}"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def _ranking(summaries: Sequence[_Summary]) -> str:
    parts = []
    full = [s for s in summaries if s.fraction is None]
    for dataset, protocol in dict.fromkeys((s.dataset, s.protocol) for s in full):
        mine = sorted((s for s in full if (s.dataset, s.protocol) == (dataset, protocol)),
                      key=lambda s: (-s.mean, s.model))
        metric = mine[0].metric
        ranks = [1 + sum(o.mean > s.mean for o in mine) for s in mine]  # equal means share a rank
        body = [(str(ranks[i]), s.model, _num(metric, s.mean), _interval(metric, s.low, s.high),
                 _num(metric, s.std) if len(s.seeds) > 1 else "–", str(len(s.seeds))) for i, s in enumerate(mine)]
        parts.append(f'<h3>{_e(dataset)} · {_e(protocol)} · {_e(metric)}</h3>' + _table(
            ("rank", "model", metric, "95% CI", "seed std", "seeds"), body, cls="ranking"))
    return "".join(parts) or "<p>No classification or segmentation results at full labels.</p>"


def _published(published: Sequence[Row] | None, study: Mapping[str, Any] | None, rows: Sequence[Row]) -> str:
    """Our numbers beside a study's published ones (written into the store by `medtransfer reproduce`)."""
    if not published:
        return ("<p>No published numbers in this store (`medtransfer reproduce STUDY` writes its study's numbers "
                "into the store).</p>")
    ours: dict[tuple[str, str, str, str], list[Row]] = {}
    for r in rows:
        if r["split"] == "test" and _full_labels(r):
            ours.setdefault((r["model"], r["dataset"], r["protocol"], r["metric"]), []).append(r)
    body = []
    for p in published:
        metric, mine = p["metric"], ours.get((p["model"], p["dataset"], p["protocol"], p["metric"]), [])
        value = _num(metric, p["value"]) + ("" if p.get("ci_halfwidth") is None else
                                            f" ± {_num(metric, p['ci_halfwidth'])}")
        if mine:
            mean, low, high = mean_interval(mine)
            inside = "yes" if low is not None and high is not None and low <= p["value"] <= high else "no"
            diff = mean - p["value"]
            cells = (_num(metric, mean), _interval(metric, low, high), str(len(mine)),
                     ("+" if diff > 0 else "") + _num(metric, diff), inside if low is not None else "–")
        else:
            cells = ("not run", "", "0", "", "")
        body.append((p["model"], p["dataset"], p["protocol"], metric, value, *cells, p.get("note", "")))
    head = ""
    if study:
        omitted = "".join(f"<li>{_e(o)}</li>" for o in study.get("omitted", []))
        head = (f"<p><b>{_e(study.get('title', ''))}</b>. {_e(study.get('citation', ''))} Numbers from "
                f"<code>{_e(study.get('source', ''))}</code>, as fractions scaled like ours.</p>"
                + (f"<p>Not reproduced here:</p><ul>{omitted}</ul>" if omitted else ""))
    return head + _table(("model", "dataset", "protocol", "metric", "published", "ours", "our 95% CI", "seeds",
                          "ours − published", "published inside our CI", "note"), body, cls="published")


def _chart(kind: str, svg: str, caption: str) -> str:
    return f'<figure class="chart" data-chart="{kind}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _bars(summaries: Sequence[_Summary], colours: Mapping[str, str], info: ReportInfo) -> str:
    full = [s for s in summaries if s.fraction is None]
    parts = []
    for protocol, metric in dict.fromkeys((s.protocol, s.metric) for s in full):
        bars = [charts.Bar(s.dataset, s.model, s.mean, s.low, s.high) for s in full
                if (s.protocol, s.metric) == (protocol, metric)]
        svg = charts.bar_chart(bars, metric=metric, title=f"{protocol}: {metric} at full labels", colours=colours)
        parts.append(_chart("bar", svg, f"{protocol}: mean over seeds; error bars: 95% bootstrap interval over "
                                        "test images (mean of the seeds' bounds)"))
        info.charts["bar"] = info.charts.get("bar", 0) + 1
    return "".join(parts) or "<p>No results to chart.</p>"


def _curves(rows: Sequence[Row], summaries: Sequence[_Summary], metrics: Mapping[str, str],
            colours: Mapping[str, str], info: ReportInfo) -> str:
    parts = []
    for dataset, protocol in dict.fromkeys((s.dataset, s.protocol) for s in summaries):
        fractions = {s.fraction for s in summaries if (s.dataset, s.protocol) == (dataset, protocol)}
        if len(fractions) < 2:
            continue
        by_model = label_efficiency(rows, metric=metrics[dataset], protocol=protocol)
        curves = {model: by_model[model][dataset] for model in colours if dataset in by_model.get(model, {})}
        svg = charts.curve_chart(curves, metric=metrics[dataset], title=f"{dataset} · {protocol}", colours=colours)
        parts.append(_chart("curve", svg, f"{dataset} · {protocol}: mean over seeds; band: 95% bootstrap interval "
                                          "(mean of the seeds' bounds)"))
        info.charts["curve"] = info.charts.get("curve", 0) + 1
    return "".join(parts) or "<p>No grid with more than one label fraction: no label-efficiency curve.</p>"


def _heatmaps(summaries: Sequence[_Summary], info: ReportInfo) -> str:
    full = [s for s in summaries if s.fraction is None]
    parts = []
    for protocol, metric in dict.fromkeys((s.protocol, s.metric) for s in full):
        mine = [s for s in full if (s.protocol, s.metric) == (protocol, metric)]
        models = list(dict.fromkeys(s.model for s in mine))
        datasets = list(dict.fromkeys(s.dataset for s in mine))
        svg = charts.heat_map({(s.model, s.dataset): s.mean for s in mine}, rows=models, columns=datasets,
                              metric=metric, title=f"{protocol}: {metric}, models × datasets")
        parts.append(_chart("heatmap", svg, f"{protocol}: mean over seeds at full labels; blank: not run"))
        info.charts["heatmap"] = info.charts.get("heatmap", 0) + 1
    return "".join(parts) or "<p>No results to map.</p>"


def _comparisons(found: Sequence[Comparison]) -> str:
    if not found:
        return "<p>No two models share a cell (same dataset, protocol, labels and seed): nothing to compare.</p>"
    body = []
    for c in found:
        significant = c.p_adjusted is not None and c.p_adjusted < 0.05
        body.append((_e(c.dataset), _e(c.protocol), _e(_labels(c.fraction)), _e(c.metric), _e(c.model_a),
                     _e(c.model_b), _num(c.metric, c.mean_a), _num(c.metric, c.mean_b),
                     ("+" if c.diff > 0 else "") + _num(c.metric, c.diff),
                     _interval(c.metric, c.ci_low, c.ci_high), _e(c.test), str(c.n), _p(c.p), _p(c.wilcoxon_p),
                     f'<span class="{"sig" if significant else ""}">{_p(c.p_adjusted)}</span>'))
    note = (f"<p>a − b on the cells both models share (same dataset, protocol, labels, seed), on each dataset's "
            f"headline metric. <b>{BOOTSTRAP}</b>: both models' stored test predictions are scored on the same "
            f"resamples of the test set and the difference (mean over shared seeds) gives the 95% interval and "
            f"a two-sided p-value; <b>{T_TEST}</b> (Wilcoxon signed-rank beside it) where predictions are missing; "
            f"{NO_TEST}: no test. Multiple-comparison correction: <b>{CORRECTION}</b> over the {len(found)} "
            f"comparisons of this page; bold: p<sub>Holm</sub> &lt; 0.05.</p>")
    head = ("dataset", "protocol", "labels", "metric", "a", "b", "a value", "b value", "a − b", "95% CI", "test",
            "n", "p", "Wilcoxon p", "p (Holm)")
    return note + _table(head, body, cls="comparisons", raw=True)


def _figures(store_path: Path, cells: Sequence[Row], info: ReportInfo) -> str:
    folder = store_path.parent / f"{store_path.stem}-figures"
    parts = []
    for cell in sorted((c for c in cells if c["status"] == "done"),
                       key=lambda c: (c["dataset"], c["protocol"], c["model"], c["seed"], c["cell_id"])):
        for png in sorted(folder.glob(f"{cell['cell_id']}-*.png")) if folder.is_dir() else []:
            what = png.stem[len(cell["cell_id"]) + 1:]
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            caption = f"{cell['model']} · {cell['dataset']} · {what} · seed {cell['seed']}"
            parts.append(f'<figure class="picture" data-cell="{_e(cell["cell_id"])}"><img alt="{_e(caption)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>')
            info.images += 1
    return "".join(parts) or f"<p>No pictures in {_e(folder)} (the analyses and segment cells write them).</p>"


def _results(rows: Sequence[Row]) -> str:
    models, grouped = pivot(rows)
    body = [(*key, *(by_model.get(m, "–") for m in models)) for key, by_model in grouped.items()]
    return ("<p>Every stored test number: value [95% CI]; accuracy/AUC/Dice in %; several seeds separated by "
            "“/”.</p>" + _table(("dataset", "protocol", "labels", "metric", *models), body, cls="results"))


def _provenance(cells: Sequence[Row]) -> str:
    body = []
    for c in cells:
        v = c.get("versions") or {}
        sha = c.get("weights_sha256") or "random init"
        error = (c.get("error") or "").strip().splitlines()
        hover = json.dumps({"config": c["config"], "versions": v}, sort_keys=True, default=str)
        body.append((f'<code title="{_e(hover)}">{_e(c["cell_id"][:12])}</code>', _e(c["model"]), _e(c["dataset"]),
                     _e(c["protocol"]), _e(c["seed"]),
                     "–" if c["protocol"] in ANALYSIS_PROTOCOLS else _e(_labels(c["fraction"])),
                     f'<span class="{_e(c["status"])}" title="{_e(error[-1] if error else "")}">{_e(c["status"])}'
                     "</span>", f'<code title="{_e(sha)}">{_e(sha[:12])}</code>', _e(v.get("medtransfer", "")),
                     _e(v.get("torch", "")), _e(v.get("python", "")),
                     "" if c.get("duration_s") is None else f"{c['duration_s']:.1f}",
                     _e((c.get("finished_at") or "")[:19].replace("T", " "))))
    head = ("config hash", "model", "dataset", "protocol", "seed", "labels", "status", "weights sha256",
            "medtransfer", "torch", "python", "seconds", "finished (UTC)")
    return ("<p>One row per cell. Hover a config hash for the cell's resolved config and library versions, a "
            "sha256 for the full hash of the weights it used, a failed status for its error.</p>"
            + _table(head, body, cls="provenance", raw=True))


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px;
color:#1d1d1f}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:32px}
h3{font-size:14px;margin:16px 0 6px}nav a{margin-right:12px}table{border-collapse:collapse;margin:6px 0 12px;
font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f6;
cursor:pointer;user-select:none}th.asc:after{content:" ▲"}th.desc:after{content:" ▼"}tr:nth-child(even) td{
background:#fafafa}figure{margin:10px 0 18px}figure.chart svg{max-width:100%;height:auto}figcaption{font-size:12px;
color:#555}figure.picture{display:inline-block;margin-right:14px;vertical-align:top}figure.picture img{max-width:540px;
border:1px solid #ddd}.sig{font-weight:700}.failed{color:#b00020}.meta{color:#555}code{font-size:12px}
"""

# Click a header to sort by that column (numbers as numbers); nothing else runs.
_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, _) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var key = function (tr) {
      var text = tr.children[col].textContent.trim(), n = parseFloat(text.replace(/^[+<]/, ""));
      return isNaN(n) ? text : n;
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return asc ? c : -c;
    });
    rows.forEach(function (tr) { body.appendChild(tr); });
  });
});
"""


def build_report(store: str | Path, out: str | Path, *, n_boot: int = 2000, seed: int = 0) -> ReportInfo:
    """Write the HTML report of `store` to `out` and say what it holds.

    Args:
        store: a results store written by `medtransfer bench`; opened read-only, never changed.
        out: the page to write (parent folders are created).
        n_boot: resamples of the paired bootstrap.
        seed: seed of its resampling.

    Raises:
        StoreError: a missing, foreign or newer-schema store.
        ConfigError: a store without results (nothing is written).
    """
    store_path, out = Path(store), Path(out)
    if out.resolve() == store_path.resolve():
        raise ConfigError(f"The report would overwrite the store {str(store_path)!r}; pass another -o FILE.")
    st = ResultStore.open_read_only(store_path)
    try:
        rows, cells = st.results(), st.cells()
        published, study = st.meta("published"), st.meta("study")
        if not rows:
            failed = sum(c["status"] == "failed" for c in cells)
            why = f" ({failed} failed cells; see `medtransfer results show`)" if failed else ""
            raise ConfigError(f"The store {str(store_path)!r} holds no results{why}; no report was written. Run "
                              f"`medtransfer bench [SPEC] --store {store_path}` first.")
        rows, superseded = latest_rows(rows)
        metrics = headline_metrics(rows)
        found = compare(rows, st.predictions, metrics=metrics, n_boot=n_boot, seed=seed)
    finally:
        st.close()
    info = ReportInfo(path=out, cells=len(cells), comparisons=len(found), sections=SECTIONS)
    summaries = _summaries(rows, metrics)
    colours = charts.palette(list(dict.fromkeys(r["model"] for r in rows)))
    body = {
        "ranking": ("Ranking per dataset", _ranking(summaries)),
        "published": ("Beside the published numbers", _published(published, study, rows)),
        "bars": ("Per protocol", _bars(summaries, colours, info)),
        "curves": ("Label efficiency", _curves(rows, summaries, metrics, colours, info)),
        "heatmap": ("Models × datasets", _heatmaps(summaries, info)),
        "comparisons": ("Paired comparisons", _comparisons(found)),
        "figures": ("Analyses' pictures", _figures(store_path, cells, info)),
        "results": ("All results", _results(rows)),
        "provenance": ("Provenance", _provenance(cells)),
    }
    done = sum(c["status"] == "done" for c in cells)
    last = max((c["finished_at"] for c in cells if c.get("finished_at")), default="–")
    head = (f'<p class="meta">store <code>{_e(store_path)}</code> · {done} of {len(cells)} cells done · last cell '
            f"finished {_e(last)} UTC · headline metric per dataset: "
            + ", ".join(f"{_e(d)}: {_e(m)}" for d, m in metrics.items()) + "</p>")
    if superseded:
        head += (f'<p class="meta">{superseded} older rows of the same model, dataset, protocol, labels and seed '
                 "(cells run with other options or another medtransfer) are left out: the page shows the latest "
                 "of each; <code>medtransfer results show</code> lists them all.</p>")
    nav = "<nav>" + "".join(f'<a href="#{k}">{_e(title)}</a>' for k, (title, _) in body.items()) + "</nav>"
    sections = "".join(f'<section id="{k}"><h2>{_e(title)}</h2>{content}</section>'
                       for k, (title, content) in body.items())
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>medtransfer report: {_e(store_path.stem)}</title><style>{_CSS}</style></head><body>"
            f"<h1>medtransfer report: {_e(store_path.stem)}</h1>{head}{nav}{sections}<script>{_JS}</script>"
            "</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return info
