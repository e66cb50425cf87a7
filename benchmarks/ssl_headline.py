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


def _values(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float, str, str], dict[int, float]]:
    out: dict[tuple[str, str, float, str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["split"] == "test" and r["metric"] in METRICS:
            key = (r["dataset"], r["protocol"], float(r["fraction"] or 1.0), r["model"], r["metric"])
            out[key][int(r["seed"])] = float(r["value"])
    return out


def summarise(store: Path, n_boot: int) -> dict[str, Any]:
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
    return {"store": str(store), "rows": table}


def _pm(x: tuple[float, float]) -> str:
    return f"{100 * x[0]:.1f} ± {100 * x[1]:.1f}"


def _vs(d: dict[str, Any] | None) -> str:
    if not d:
        return "–"
    lo, hi = d["boot_ci"]
    p_t = "–" if d["t_p"] is None else f"{d['t_p']:.2f}"
    boot = f"[{100 * lo:+.1f}, {100 * hi:+.1f}], p_holm {d['boot_p_holm']:.2g}" if lo is not None else "no test"
    return f"**{100 * d['diff']:+.1f}** (bootstrap {boot}; t over seeds p {p_t})"


def markdown(summary: dict[str, Any]) -> str:
    head = ("| dataset | protocol | labels | model | AUC (%) | ACC (%) | AUC − scratch | ACC − scratch |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in summary["rows"]:
        lines.append(f"| {r['dataset']} | {r['protocol']} | {100 * r['fraction']:g}% | {r['model']} | "
                     f"{_pm(r['auc'])} | {_pm(r['accuracy'])} | {_vs(r.get('auc_vs_scratch'))} | "
                     f"{_vs(r.get('accuracy_vs_scratch'))} |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], store: Path, path: Path) -> None:
    from matplotlib.figure import Figure

    st = ResultStore.open_read_only(store)
    try:
        values = _values(latest_rows(st.results())[0])
    finally:
        st.close()
    panels = sorted({(r["dataset"], r["protocol"]) for r in summary["rows"]})
    models = list(dict.fromkeys(r["model"] for r in summary["rows"]))
    fig = Figure(figsize=(3.3 * len(panels), 3.1), layout="constrained")
    for i, (dataset, protocol) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k, model in enumerate(sorted(models, key=lambda m: (m != BASE, m))):
            pts = sorted((f, v) for (d, p, f, m, metric), v in values.items()
                         if (d, p, m, metric) == (dataset, protocol, model, "auc"))
            if not pts:
                continue
            x = [100 * f for f, _ in pts]
            seeds = [np.array(list(v.values())) for _, v in pts]
            style = {"color": "0.35", "ls": "--"} if model == BASE else {"color": f"C{k}"}
            ax.plot(x, [100 * s.mean() for s in seeds], marker="o", label=model, **style)
            ax.fill_between(x, [100 * s.min() for s in seeds], [100 * s.max() for s in seeds], alpha=0.15,
                            color=style["color"])
        ax.set_xscale("log")
        ax.set_xticks([1, 10, 100], ["1%", "10%", "100%"])
        ax.set_title(f"{dataset}, {protocol}", fontsize=9)
        ax.set_xlabel("training labels")
        if i == 0:
            ax.set_ylabel("test AUC (%)")
        ax.grid(alpha=0.3)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(models), fontsize=8)
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
    summary = summarise(a.store, a.n_boot)
    if a.svg:
        plot(summary, a.store, a.svg)
    print(json.dumps(summary, indent=1) if a.json else markdown(summary))


if __name__ == "__main__":
    main()
