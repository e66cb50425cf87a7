"""The Ray executor on a local 2-CPU cluster: the local executor's numbers, resume, pictures, dead addresses."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtransfer.errors import ConfigError
from medtransfer.runner import ResultStore, load_spec, run_grid
from medtransfer.runner.ray import _collect, _Pending, check_address
from medtransfer.runner.store import Cell, ResultRow

SPEC = """name: rayt
models: [test-cnn, small-cnn]
datasets: [phantom-binary-28, phantom-organ-28]
protocols: [linear, knn]
seeds: [0, 1]
dataset_options: {phantom-binary-28: {n: 60}, phantom-organ-28: {n: 60}}
protocol_options: {linear: {C_grid: [0.1, 1.0], n_boot: 100}, knn: {n_boot: 100}}
"""


def _values(store: ResultStore) -> dict[tuple[str, str, str], tuple[float, Any, Any]]:
    return {(r["cell_id"], r["metric"], r["split"]): (r["value"], r["ci_low"], r["ci_high"]) for r in store.results()}


# ---------------------------------------------------------------- addresses (no cluster needed)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


def test_an_address_that_is_not_host_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        check_address("nohost")
    check_address(None)
    check_address("auto")  # left to Ray, which answers at once


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_dead_address_is_a_clear_error_within_seconds(scheme: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="does not answer as a Ray cluster.*nothing was run"):
        check_address(f"{scheme}127.0.0.1:{_closed_port()}", timeout=2.0)
    assert time.perf_counter() - t0 < 5


def test_a_server_that_is_not_ray_is_refused() -> None:
    for module in ("ray", "grpc"):  # without them the check falls back to a TCP connection, which this server accepts
        pytest.importorskip(module, reason="the GCS probe uses Ray's gRPC stubs (pip install 'medtransfer[ray]')")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_garbage() -> None:
        try:
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.1 404 Not Found\r\n\r\n")
            conn.close()
        except OSError:
            pass

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="does not answer as a Ray cluster"):
            check_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=2.0)
        assert time.perf_counter() - t0 < 5
    finally:
        server.close()


# ---------------------------------------------------------------- the driver's bookkeeping (a stand-in for ray)


class _FakeRay:
    """`wait` hands back refs in submission order; `get` returns the value or raises the stored error."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def wait(self, refs: list[str], num_returns: int = 1) -> tuple[list[str], list[str]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: str) -> Any:
        value = self.values[ref]
        if isinstance(value, BaseException):
            raise value
        return value


def test_failed_tasks_fail_their_cells_once_and_the_rest_are_stored(tmp_path: Path) -> None:
    from medtransfer.runner.local import CellOutcome, RunSummary

    cells = [Cell(f"c{i}", "m", "d", "linear", seed=i) for i in range(3)]
    with ResultStore(tmp_path / "r.sqlite") as store:
        for c in cells:
            store.start(c)
        boom = RuntimeError("extraction broke")  # what a frozen task raises when its pair's features task failed
        ok = CellOutcome([ResultRow("auc", "test", 0.7)], {"n_train": 1}, compute_s=0.5)
        pending = {f"f{i}": _Pending((c,), "frozen") for i, c in enumerate(cells)}
        summary = RunSummary(total=3)
        _collect(_FakeRay({"f0": boom, "f1": boom, "f2": ok}), store, pending, summary)
        assert summary.done == 1 and len(summary.failed) == 2  # each failed cell recorded once
        assert {c["cell_id"]: c["status"] for c in store.cells()} == {"c0": "failed", "c1": "failed", "c2": "done"}
        assert "extraction broke" in store.cells(status="failed")[0]["error"]
        assert store.cells(status="done")[0]["duration_s"] == 0.5  # the task's own time, not its queueing


# ---------------------------------------------------------------- a real local cluster

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'medtransfer[ray]')")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local cluster of 2 CPUs for the module; its workers keep their caches in their own home."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'medtransfer[ray]')")
    home = tmp_path_factory.mktemp("ray-home")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"MEDTRANSFER_HOME": str(home)}})
    yield home
    ray.shutdown()


@pytest.mark.timeout(240)
def test_ray_computes_what_the_local_executor_computes_and_resumes(cluster: Path, tmp_path: Path) -> None:
    from medtransfer.runner.ray import run_grid_ray

    (tmp_path / "s.yaml").write_text(SPEC + "analyses: [saliency]\nanalysis_options: {saliency: {n_images: 2}}\n")
    spec = load_spec(tmp_path / "s.yaml")
    with ResultStore(tmp_path / "local.sqlite") as local:
        run_grid(spec, local)
        expected = _values(local)
        local_preds = {c: local.predictions(c) for c in local.done_cells()}
    with ResultStore(tmp_path / "ray.sqlite") as st:
        first = run_grid_ray(spec, st)
        assert (first.done, first.skipped, first.failed) == (2 * 2 * 2 * 2 + 2 * 2 * 2, 0, [])
        got = _values(st)
        assert got.keys() == expected.keys()
        analyses = {c["cell_id"] for c in st.cells() if c["protocol"] == "saliency"}
        # the executor changes where cells run, never what they compute: the protocols' numbers are identical;
        # the saliency measures sum float32 occlusion maps, whose last bits follow the thread count (a Ray
        # worker runs one thread), so they agree to float32 rounding
        assert {k: v for k, v in got.items() if k[0] not in analyses} == {
            k: v for k, v in expected.items() if k[0] not in analyses}
        for k in (k for k in got if k[0] in analyses):
            assert got[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-7)
        for cell_id, preds in local_preds.items():
            stored = st.predictions(cell_id)
            assert (stored is None) == (preds is None)
            if preds is not None:
                np.testing.assert_array_equal(stored.y_score, preds.y_score)  # type: ignore[union-attr]
        for cell in st.cells():  # the saliency pictures came back to the driver and lie beside the store
            for f in (cell["extra"] or {}).get("files", []):
                assert Path(f).is_file() and Path(f).parent == tmp_path / "ray-figures"
        second = run_grid_ray(spec, st)
        assert (second.done, second.skipped) == (0, first.done)  # resume: nothing recomputed
        assert _values(st) == got


def _done(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        st = ResultStore.open_read_only(path)
    except Exception:  # noqa: BLE001 - the store is being created
        return 0
    try:
        return len(st.done_cells())
    finally:
        st.close()


@needs_ray
@pytest.mark.timeout(300)
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_ray_driver_loses_at_most_its_running_cells(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3, 4, 5]"))
    with ResultStore(tmp_path / "local.sqlite") as local:  # the uninterrupted run to compare with
        run_grid(load_spec(spec), local)
        expected = _values(local)
    db = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "medtransfer.cli", "bench", str(spec), "--store", str(db), "--executor", "ray",
           "--num-cpus", "2", "--json"]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "RAY_DISABLE_IMPORT_WARNING": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 200
    while _done(db) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.wait()
    killed_at = _done(db)
    assert 3 <= killed_at < 48, f"kill landed after {killed_at} of 48 cells; the test needs a mid-run kill"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with ResultStore(db) as st:
        assert len(st.done_cells()) == 48
        keys = [(r["cell_id"], r["metric"], r["split"]) for r in st.results()]
        assert len(keys) == len(set(keys))  # every finished cell exactly once
        assert _values(st) == expected  # and the same numbers as a run that was never killed
        attempts = {c["cell_id"]: c["attempts"] for c in st.cells()}
    assert sum(a > 1 for a in attempts.values()) <= 48 - killed_at  # only cells not done at the kill re-ran
