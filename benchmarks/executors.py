"""The Ray executor beside the local one, on the same grid, same machine, one run: overhead per cell and wall time.

Each executor runs the grid into its own fresh store with its own empty feature cache (MEDTRANSFER_HOME), so
both extract every (model, dataset) pair's features once. The Ray side is timed in parts: the whole call, the
cluster's start, the workers' first import of torch and medtransfer (which a long-lived cluster pays once), and the
grid alone on those warm workers. From the measured per-cell costs the script
also says how many cells one GPU-hour holds (frozen cells on CPU workers, image cells on GPUs) for the docs.

    .venv/bin/python benchmarks/executors.py                       # real MedMNIST from ../shared/data/medmnist
    .venv/bin/python benchmarks/executors.py --seeds 0 1 --json    # a quicker run, JSON on stdout

Results go to benchmarks/out/executors.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist"


def _spec_text(seeds: list[int], data_root: Path) -> str:
    return (f"name: executors\nmodels: [resnet18-small, small-cnn]\ndatasets: [breastmnist, pneumoniamnist]\n"
            f"protocols: [linear, knn, fewshot]\nseeds: {seeds}\ndata_root: {data_root}\n"
            "protocol_options: {linear: {n_boot: 1000}, knn: {n_boot: 1000}, fewshot: {episodes: 200}}\n")


def _timed_local(spec: Any, store_path: Path, home: Path) -> dict[str, Any]:
    from medtransfer.runner import ResultStore, run_grid

    os.environ["MEDTRANSFER_HOME"] = str(home)
    t0 = time.perf_counter()
    with ResultStore(store_path) as st:
        summary = run_grid(spec, st)
        durations = [c["duration_s"] for c in st.cells(status="done")]
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "cells": summary.done, "failed": len(summary.failed),
            "median_cell_s": statistics.median(durations), "cells_s": sum(durations),
            "extraction_s": wall - sum(durations)}  # the rest of the loop: building models, extracting features


def _timed_ray(spec: Any, store_path: Path, home: Path, num_cpus: int) -> dict[str, Any]:
    import ray

    from medtransfer.runner import ResultStore
    from medtransfer.runner.ray import run_grid_ray

    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"MEDTRANSFER_HOME": str(home)}})
    ray.get([ray.remote(lambda: 0).remote() for _ in range(num_cpus)])  # workers up
    started = time.perf_counter()

    def warm() -> int:
        import medtransfer.runner.local  # noqa: F401 - torch and the protocols, as a cell's first task imports them

        time.sleep(1.0)  # keep this worker busy, so that each of the num_cpus tasks warms a different worker
        return os.getpid()

    pids = set(ray.get([ray.remote(warm).remote() for _ in range(num_cpus)]))
    warmed = time.perf_counter()
    try:
        with ResultStore(store_path) as st:
            summary = run_grid_ray(spec, st)
            durations = [c["duration_s"] for c in st.cells(status="done")]
    finally:
        ray.shutdown()
    end = time.perf_counter()
    return {"wall_s": end - t0, "cluster_start_s": started - t0, "worker_imports_s": warmed - started - 1.0,
            "warm_workers": len(pids), "grid_s": end - warmed, "cells": summary.done,
            "failed": len(summary.failed), "median_cell_s": statistics.median(durations), "cells_s": sum(durations)}


def _same_numbers(a: Path, b: Path) -> bool:
    from medtransfer.runner import ResultStore

    def values(path: Path) -> dict:
        with ResultStore(path) as st:
            return {(r["cell_id"], r["metric"]): r["value"] for r in st.results()}

    return values(a) == values(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from medtransfer.runner import load_spec

    with tempfile.TemporaryDirectory(prefix="mt-executors-") as tmp:
        work = Path(tmp)
        (work / "spec.yaml").write_text(_spec_text(args.seeds, args.data_root))
        spec = load_spec(work / "spec.yaml")
        local = _timed_local(spec, work / "local.sqlite", work / "home-local")
        ray_side = _timed_ray(spec, work / "ray.sqlite", work / "home-ray", args.num_cpus)
        same = _same_numbers(work / "local.sqlite", work / "ray.sqlite")
    cells = local["cells"]
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "grid": {"models": 2, "datasets": 2, "protocols": 3, "seeds": len(args.seeds), "cells": cells},
        "local": local, "ray": ray_side, "same_numbers": same,
        "ray_over_local_wall": ray_side["wall_s"] / local["wall_s"],
        "ray_grid_over_local_wall": ray_side["grid_s"] / local["wall_s"],
        "overhead_per_cell_s": (ray_side["grid_s"] - local["wall_s"]) / cells,
        # each cell's share of the grid's measured cost (its pair's extraction included), on this CPU
        "cost_per_cell_s": local["wall_s"] / cells,
        "cells_per_worker_hour": 3600 * cells / local["wall_s"],
    }
    pairs = 2 * 2
    out["spread"] = {n: {"grid_s": max(local["extraction_s"] / pairs * -(-pairs // n) + local["cells_s"] / n, 0)}
                     for n in (1, 2, 4, 8)}  # pairs extract in parallel (ceil(pairs / n) rounds), cells spread
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / "executors.json").write_text(json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{cells} cells; local {local['wall_s']:.1f} s; ray {ray_side['wall_s']:.1f} s "
          f"(cluster start {ray_side['cluster_start_s']:.1f} s, worker imports {ray_side['worker_imports_s']:.1f} s, "
          f"grid on warm workers {ray_side['grid_s']:.1f} s); "
          f"ray/local wall {out['ray_over_local_wall']:.2f}x, grid alone {out['ray_grid_over_local_wall']:.2f}x; "
          f"overhead {out['overhead_per_cell_s']:+.3f} s per cell; same numbers: {same}")


if __name__ == "__main__":
    main()
