"""Peak memory of feature extraction as the dataset grows: it must stay bounded (streamed to a cached .npy).

Each size runs in a fresh child process, which reports its own peak RSS (ru_maxrss). Phantom images are rendered
on demand, so 100k images never sit in memory; features are written batch by batch.

    .venv/bin/python benchmarks/memory.py --n 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from medtransfer import data, models
from medtransfer.features import extract
n, model_name, dataset = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
fs = extract(models.create(model_name), data.load(dataset, "train", n=n), batch_size=256)
print(json.dumps({"n": n, "model": model_name, "dataset": dataset, "shape": list(fs.x.shape),
                  "seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "cache_mib": round(fs.x.nbytes / 2**20, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--dataset", default="phantom-binary-64")
    parser.add_argument("--out", default="benchmarks/out/memory.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"MEDTRANSFER_HOME": home}
        for n in args.n:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), args.model, args.dataset], env=env,
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
