"""Start-up time of the light CLI commands, this tree beside an older commit, in one run.

Every command runs in a fresh interpreter (as a user types it), best of `--repeats`; the older commit's
`src/` is checked out with `git worktree` into a temporary folder and run with the same Python and packages.

    .venv/bin/python benchmarks/startup.py                 # against cff3feb (before issue #16)
    .venv/bin/python benchmarks/startup.py --base HEAD~3 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["datasets", "list"], ["datasets", "info", "breastmnist-64"], ["models", "list"],
            ["eval"], ["bench", "--no-such-option"]]


def wall(src: Path, argv: list[str], repeats: int) -> float:
    """Best-of-`repeats` seconds of `medtransfer ARGV` run from the package in `src`."""
    env = os.environ | {"PYTHONPATH": str(src)}
    code = "from medtransfer.cli import main; main()"
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, check=False)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="cff3feb", help="the older commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/startup.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            for argv in COMMANDS:
                before, after = wall(base / "src", argv, args.repeats), wall(ROOT / "src", argv, args.repeats)
                rows.append({"command": " ".join(argv), "before_s": round(before, 2), "after_s": round(after, 2),
                             "speedup": round(before / after, 1)})
                print(f"| medtransfer {' '.join(argv)} | {before:.2f} | {after:.2f} | {before / after:.1f}x |",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    env = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.processor()
           or platform.machine(), "base": args.base, "load_average_at_start": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    print(f"environment: {env}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
