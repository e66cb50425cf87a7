"""The headline experiment's table and plot (issue #17): self-supervised pretraining vs random init.

Reads a store written by `medtransfer reproduce ssl-medmnist-cpu` (or `ssl-medmnist`) and prints, per dataset,
protocol and label budget, each model's test AUC and accuracy as mean ± std over seeds, and each SSL model minus
the random-init network (`resnet18-small`) with two paired tests: the paired bootstrap over the same test images
(pooled over seeds, Holm-corrected over the whole study as the report does) and the paired t-test over seeds
(the seed-to-seed spread, which the bootstrap does not see). Draws the label-efficiency curves (one panel per
dataset and protocol, mean over seeds with the min-max over seeds as a band) as an SVG.

    .venv/bin/medtransfer reproduce ssl-medmnist-cpu --data-root ../shared/data/medmnist --store runs/ssl.sqlite
    .venv/bin/python benchmarks/ssl_headline.py runs/ssl.sqlite --svg docs/img/ssl-medmnist-cpu.svg
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.report.stats import compare, latest_rows, paired_seeds
from medtransfer.runner.store import ResultStore

BASE = "resnet18-small"
METRICS = ("auc", "accuracy")


Values = dict[tuple[str, str, float, str, str], dict[int, float]]  # (dataset, protocol, fraction, model, metric)


def _values(rows: list[dict[str, Any]]) -> Values:
    out: Values = defaultdict(dict)
    for r in rows:
        if r["split"] == "test" and r["metric"] in METRICS:
            key = (r["dataset"], r["protocol"], float(r["fraction"] or 1.0), r["model"], r["metric"])
            out[key][int(r["seed"])] = float(r["value"])
    return out


def summarise(store: Path, n_boot: int) -> tuple[dict[str, Any], Values]:
    """(the table's rows, every test value by (dataset, protocol, fraction, model, metric) and seed)."""
    st = ResultStore.open_read_only(store)
    try:
        rows, _ = latest_rows(st.results())
        datasets = sorted({r["dataset"] for r in rows})
        boot = {m: compare(rows, st.predictions, metrics={d: m for d in datasets}, n_boot=n_boot) for m in METRICS}
    finally:
        st.close()
    values = _values(rows)
    table = []
    for (dataset, protocol, fraction, model, metric), by_seed in sorted(values.items()):
        if metric != "auc":
            continue
        acc = values[(dataset, protocol, fraction, model, "accuracy")]
        row: dict[str, Any] = {"dataset": dataset, "protocol": protocol, "fraction": fraction, "model": model,
                               "seeds": sorted(by_seed)}
        for name, vals in (("auc", by_seed), ("accuracy", acc)):
            v = np.array([vals[s] for s in sorted(vals)])
            row[name] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            base = values.get((dataset, protocol, fraction, BASE, name), {})
            if model != BASE and base:
                seeds = sorted(set(vals) & set(base))
                diff, low, high, p_t, _ = paired_seeds([vals[s] for s in seeds], [base[s] for s in seeds])
                c = next(c for c in boot[name] if (c.dataset, c.protocol, c.fraction or 1.0) ==
                         (dataset, protocol, fraction) and {c.model_a, c.model_b} == {model, BASE})
                sign = 1.0 if c.model_a == model else -1.0  # compare() orders a before b by name
                lo, hi = sorted((sign * c.ci_low, sign * c.ci_high)) if c.ci_low is not None else (None, None)
                row[f"{name}_vs_scratch"] = {"diff": diff, "t_ci": [low, high], "t_p": p_t,
                                             "boot_diff": sign * c.diff, "boot_ci": [lo, hi],
                                             "boot_p_holm": c.p_adjusted, "test": c.test}
        table.append(row)
    return {"store": str(store), "rows": table}, values


def _pm(x: tuple[float, float]) -> str:
    return f"{100 * x[0]:.1f} ± {100 * x[1]:.1f}"


def _p(p: float | None) -> str:
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def _vs(d: dict[str, Any] | None) -> str:
    if not d:
        return "–"
    lo, hi = d["boot_ci"]
    boot = f"[{100 * lo:+.1f}, {100 * hi:+.1f}] p<sub>H</sub> {_p(d['boot_p_holm'])}" if lo is not None else "no test"
    return f"**{100 * d['diff']:+.1f}** {boot}, p<sub>t</sub> {_p(d['t_p'])}"


def markdown(summary: dict[str, Any], metric: str = "auc") -> str:
    """One row per (dataset, protocol, labels): the random-init network, then each SSL model and its difference
    (points; 95% paired-bootstrap interval, its Holm-corrected p, and the t-test over seeds' p)."""
    by_point: dict[tuple[str, str, float], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in summary["rows"]:
        by_point[(r["dataset"], r["protocol"], r["fraction"])][r["model"]] = r
    others = sorted({m for point in by_point.values() for m in point if m != BASE},
                    key=lambda m: (not m.startswith("simclr"), m))  # SimCLR first, the reference method
    methods = list(dict.fromkeys(m.split("-")[0] for m in others))
    name = "AUC" if metric == "auc" else "ACC"
    head = [f"| dataset | protocol | labels | random init {name} (%) |"
            + "".join(f" {m} {name} (%) | {m} − random init |" for m in methods),
            "|---|---|---|---|" + "---|---|" * len(methods)]
    for (dataset, protocol, fraction), point in sorted(by_point.items()):
        cells = [dataset, protocol, f"{100 * fraction:g}%", _pm(point[BASE][metric]) if BASE in point else "–"]
        for method in methods:
            r = next((v for k, v in point.items() if k.split("-")[0] == method), None)
            cells += [_pm(r[metric]), _vs(r.get(f"{metric}_vs_scratch"))] if r else ["–", "–"]
        head.append("| " + " | ".join(cells) + " |")
    return "\n".join(head)


def plot(summary: dict[str, Any], values: Values, path: Path) -> None:
    from matplotlib.figure import Figure

    datasets = sorted({r["dataset"] for r in summary["rows"]})
    protocols = sorted({r["protocol"] for r in summary["rows"]}, key=lambda p: p != "linear")
    methods = sorted({r["model"].split("-")[0] for r in summary["rows"] if r["model"] != BASE},
                     key=lambda m: (m != "simclr", m))
    style = {BASE: {"color": "0.35", "ls": "--", "label": "random init"}}
    style |= {m: {"color": f"C{k}", "label": m} for k, m in enumerate(methods)}
    fig = Figure(figsize=(3.4 * len(protocols), 2.6 * len(datasets) + 0.5), layout="constrained")
    for i, dataset in enumerate(datasets):
        for j, protocol in enumerate(protocols):
            ax = fig.add_subplot(len(datasets), len(protocols), i * len(protocols) + j + 1)
            for model in sorted({m for (d, p, _, m, _) in values if (d, p) == (dataset, protocol)},
                                key=lambda m: (m != BASE, m)):
                pts = sorted((f, v) for (d, p, f, m, metric), v in values.items()
                             if (d, p, m, metric) == (dataset, protocol, model, "auc"))
                x = [100 * f for f, _ in pts]
                seeds = [np.array(list(v.values())) for _, v in pts]
                st = style[BASE if model == BASE else model.split("-")[0]]
                ax.plot(x, [100 * v.mean() for v in seeds], marker="o", **st)
                ax.fill_between(x, [100 * v.min() for v in seeds], [100 * v.max() for v in seeds], alpha=0.15,
                                color=st["color"])
            ax.set_xscale("log")
            ax.set_xticks([1, 10, 100], ["1%", "10%", "100%"])
            ax.set_title(f"{dataset}, {protocol}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(datasets) - 1:
                ax.set_xlabel("training labels")
            if j == 0:
                ax.set_ylabel("test AUC (%)")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=1 + len(methods),
               fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "medtransfer", "svg.fonttype": "none"}):
        fig.savefig(path, format="svg", metadata={"Date": None})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", type=Path)
    p.add_argument("--svg", type=Path, default=None, help="write the label-efficiency figure here")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    summary, values = summarise(a.store, a.n_boot)
    if a.svg:
        plot(summary, values, a.svg)
    print(json.dumps(summary, indent=1) if a.json else markdown(summary) + "\n\n" + markdown(summary, "accuracy"))


if __name__ == "__main__":
    main()
