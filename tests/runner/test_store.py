"""The results store: atomic cells, no duplicates, survives SIGKILL, skip logic, exports, schema guard."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from medtransfer.errors import ConfigError, UnknownNameError
from medtransfer.runner import store as store_module
from medtransfer.runner.store import SCHEMA_VERSION, Cell, Predictions, ResultRow, ResultStore, StoreError, versions

ROWS = [ResultRow("auc", "test", 0.91, 0.88, 0.94, 156),
        ResultRow("accuracy", "test", 1 / 3, None, None, 156),
        ResultRow("auc", "val", 0.87)]


def _cell(i: int = 0, **kw: object) -> Cell:
    fields: dict[str, object] = dict(model="resnet18", dataset="breastmnist-64", protocol="knn", seed=i,
                                     fraction=None, config={"k": 20, "seed": i})
    fields.update(kw)
    return Cell(f"cell{i:03d}", **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    with ResultStore(tmp_path / "runs" / "results.sqlite") as s:
        yield s


def _rows_of(store: ResultStore, cell_id: str) -> list[tuple[str, str, float]]:
    return sorted((r["metric"], r["split"], r["value"]) for r in store.results(cell_id=cell_id))


# ---------------------------------------------------------------- writing a cell


def test_a_cell_goes_from_running_to_done(store: ResultStore) -> None:
    cell = _cell(fraction=0.1)
    assert store.status(cell.cell_id) is None
    store.start(cell)
    assert store.status(cell.cell_id) == "running" and store.done_cells() == set()
    store.finish(cell.cell_id, ROWS, weights_sha256="ab" * 32, extra={"chosen_k": np.int64(10)})  # numpy ok
    assert store.done_cells() == {cell.cell_id}
    (row,) = store.cells()
    assert row["attempts"] == 1 and row["config"] == {"k": 20, "seed": 0} and row["extra"] == {"chosen_k": 10}
    assert row["versions"]["python"] and row["weights_sha256"] == "ab" * 32 and row["duration_s"] >= 0
    for stamp in (row["started_at"], row["finished_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)  # ISO-8601, UTC
    got = store.results(metric="auc", split="test")
    assert len(got) == 1 and got[0]["fraction"] == 0.1 and got[0]["ci_low"] == 0.88 and got[0]["n"] == 156
    assert got[0]["model"] == "resnet18" and got[0]["versions"] == row["versions"]


def test_store_is_in_wal_mode_with_its_parent_folders(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "a" / "b" / "r.sqlite") as s:
        s.start(_cell())
    conn = sqlite3.connect(tmp_path / "a" / "b" / "r.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)


def _rows_then_crash() -> Iterator[ResultRow]:
    yield ROWS[0]
    yield ROWS[1]
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("bad_rows, error", [
    ([ROWS[0], ResultRow("auc", "val", float("nan"))], ConfigError),  # a NaN value is refused half-way
    ([ROWS[0], ROWS[0]], sqlite3.IntegrityError),  # the same (metric, split) twice
    (_rows_then_crash, RuntimeError),  # the producer of the rows fails after two inserts
])
def test_finish_is_atomic(store: ResultStore, bad_rows: object, error: type[Exception]) -> None:
    rows = bad_rows() if callable(bad_rows) else bad_rows
    store.start(_cell(0))
    with pytest.raises(error):
        store.finish("cell000", rows, weights_sha256=None)  # type: ignore[arg-type]
    assert store.results() == [] and store.status("cell000") == "running"


def test_failed_finish_keeps_the_previous_complete_result(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.finish("cell000", _rows_then_crash(), weights_sha256=None)
    assert len(_rows_of(store, "cell000")) == 3 and store.status("cell000") == "done"


def test_finishing_twice_replaces_rows_never_duplicates(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    again = [ResultRow("auc", "test", 0.5), ResultRow("auc", "val", 0.6)]
    store.finish("cell000", again, weights_sha256=None)
    assert _rows_of(store, "cell000") == [("auc", "test", 0.5), ("auc", "val", 0.6)]


def test_nan_interval_bounds_are_stored_as_null(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", [ResultRow("auc", "test", 0.7, float("nan"), float("nan"))], weights_sha256=None)
    (row,) = store.results()
    assert row["ci_low"] is None and row["ci_high"] is None


def test_finish_before_start_is_refused(store: ResultStore) -> None:
    with pytest.raises(StoreError, match=r"Cell 'nope' is not in the store .* call store.start\(cell\)"):
        store.finish("nope", ROWS, weights_sha256=None)


# ---------------------------------------------------------------- failures and re-runs


def test_failed_cells_record_the_error(store: ResultStore) -> None:
    store.start(_cell(0))
    store.fail("cell000", "Traceback ...\nValueError: bad shape")
    (row,) = store.cells(status="failed")
    assert row["error"].endswith("bad shape") and row["finished_at"] is not None
    assert store.done_cells() == set() and store.results() == []


def _run_grid(store: ResultStore, cells: list[Cell], broken: set[str]) -> list[str]:
    """A minimal runner loop: skip done cells, run the rest, store success or failure."""
    ran = []
    done = store.done_cells()
    for cell in cells:
        if cell.cell_id in done:
            continue
        ran.append(cell.cell_id)
        store.start(cell)
        if cell.cell_id in broken:
            store.fail(cell.cell_id, "CellError: boom")
        else:
            store.finish(cell.cell_id, ROWS, weights_sha256=None)
    return ran


def test_rerun_skips_done_cells_and_retries_the_rest(store: ResultStore) -> None:
    cells = [_cell(i) for i in range(4)]
    assert _run_grid(store, cells, broken={"cell002"}) == ["cell000", "cell001", "cell002", "cell003"]
    assert _run_grid(store, cells, broken=set()) == ["cell002"]
    assert _run_grid(store, cells, broken=set()) == []
    attempts = {c["cell_id"]: c["attempts"] for c in store.cells()}
    assert attempts == {"cell000": 1, "cell001": 1, "cell002": 2, "cell003": 1}
    assert len(store.results()) == 4 * len(ROWS) and store.cells(status="failed") == []


def test_restarting_a_done_cell_drops_its_rows(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    store.start(_cell(0))  # a forced re-run: no rows may stand for a cell that is not done
    assert store.results() == [] and store.status("cell000") == "running"


# ---------------------------------------------------------------- a killed driver

# Children load store.py on its own: `import medtransfer.runner` would also import the executors and torch
# (seconds per process), and the store must not depend on them anyway.
LOAD_STORE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("store_alone", sys.argv[1])
S = importlib.util.module_from_spec(spec)
sys.modules["store_alone"] = S  # dataclasses look their module up here
spec.loader.exec_module(S)
"""
CHILD = LOAD_STORE + """
import time

def rows():
    for k in range(5):
        time.sleep(0.002)  # keep the transaction open a while, so the kill often lands inside it
        yield S.ResultRow(f"m{k}", "test", k / 10)

store = S.ResultStore(sys.argv[2])
for i in range(int(sys.argv[3]), 10**6):
    cell = S.Cell(f"c{i:07d}", "m", "d", "p", seed=i)
    store.start(cell)
    store.finish(cell.cell_id, rows(), weights_sha256=None)
    print(i, flush=True)
"""


def _run_and_kill(path: Path, offset: int, after: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, store_module.__file__, str(path), str(offset)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(after):
            assert proc.stdout is not None
            assert proc.stdout.readline(), f"child died early: {proc.stderr.read() if proc.stderr else ''}"
        time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_run_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    for round_, offset in enumerate((0, 1000, 0)):  # the third round re-runs the first round's cells
        _run_and_kill(path, offset, after=5)
        with ResultStore(path) as s:
            done = s.done_cells()
            counts: dict[str, int] = {}
            for r in s.results():
                counts[r["cell_id"]] = counts.get(r["cell_id"], 0) + 1
            assert set(counts) == done, "rows of a cell that is not done, or a done cell without rows"
            assert set(counts.values()) == {5}, "a done cell with missing or duplicated rows"
            assert len(done) >= 5 * min(round_ + 1, 2)
            assert len(s.cells(status="running")) <= round_ + 1  # at most the cell each kill interrupted
            assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------- reading and exporting


def test_results_filters(store: ResultStore) -> None:
    for i, protocol in enumerate(("knn", "linear")):
        store.start(_cell(i, protocol=protocol))
        store.finish(f"cell{i:03d}", ROWS, weights_sha256=None)
    assert len(store.results(protocol="linear")) == 3
    assert [r["seed"] for r in store.results(metric="auc", split="test")] == [0, 1]
    assert store.results(seed=1, metric="accuracy")[0]["value"] == 1 / 3
    with pytest.raises(UnknownNameError, match="Unknown results filter 'modle'. Did you mean 'model'"):
        store.results(modle="resnet18")
    with pytest.raises(ConfigError, match="'status' parameter must be one of"):
        store.cells(status="finished")


def test_csv_export_round_trips_values(store: ResultStore, tmp_path: Path) -> None:
    store.start(_cell(0, fraction=0.01))
    store.finish("cell000", ROWS, weights_sha256="ff")
    path = store.to_csv(tmp_path / "out" / "results.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for stored, exported in zip(store.results(), rows, strict=True):
        assert float(exported["value"]) == stored["value"]  # exact: 1/3 survives the text form
        assert float(exported["fraction"]) == 0.01 and int(exported["seed"]) == 0
        assert (exported["ci_low"] == "") == (stored["ci_low"] is None)


def test_parquet_export_names_missing_package(store: ResultStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(ImportError, match=r"needs the package 'pyarrow'.*pip install pandas pyarrow"):
        store.to_parquet(tmp_path / "results.parquet")


def test_parquet_export_round_trips(store: ResultStore, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    frame = pd.read_parquet(store.to_parquet(tmp_path / "results.parquet"))
    assert frame["value"].tolist() == [r["value"] for r in store.results()]


# ---------------------------------------------------------------- schema and files


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}.*Upgrade medtransfer"):
        ResultStore(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database " * 100)
    with pytest.raises(StoreError, match="is not a medtransfer results store"):
        ResultStore(path)


def test_a_reader_sees_committed_cells_while_the_writer_is_open(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    with ResultStore(store.path) as reader:
        assert reader.done_cells() == {"cell000"}


def test_versions_does_not_import_torch() -> None:
    assert {"python", "medtransfer", "torch", "numpy", "scikit-learn"} <= set(versions())
    code = LOAD_STORE + "v = S.versions(); assert v['numpy'] and v['torch'] and 'torch' not in sys.modules, v"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code, store_module.__file__], check=True, env=env, timeout=60)


# ---------------------------------------------------------------- read-only opening and exports


def test_read_only_opening_refuses_foreign_files_and_changes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No results store at"):
        ResultStore.open_read_only(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE patients (id INTEGER)")
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a medtransfer results store.*not changed"):
        ResultStore.open_read_only(foreign)
    assert foreign.read_bytes() == before
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a medtransfer results store"):
        ResultStore.open_read_only(junk)
    assert junk.read_bytes() == b"not a database at all" * 100


def test_read_only_store_reads_and_cannot_write(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    ro = ResultStore.open_read_only(store.path)
    try:
        assert ro.results() == store.results()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.start(_cell(1))
    finally:
        ro.close()


def test_cli_exports_csv_parquet_json_and_shows(store: ResultStore, tmp_path: Path) -> None:
    import csv
    import json

    from typer.testing import CliRunner

    from medtransfer.cli import app

    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None)
    expected = [r["value"] for r in store.results()]
    run = CliRunner()
    out = run.invoke(app, ["results", "export", str(store.path), "--format", "csv", "-o", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    with open(tmp_path / "r.csv") as f:
        assert [float(r["value"]) for r in csv.DictReader(f)] == expected
    out = run.invoke(app, ["results", "export", str(store.path), "--format", "json", "-o", str(tmp_path / "r.json")])
    assert out.exit_code == 0 and [r["value"] for r in json.loads((tmp_path / "r.json").read_text())] == expected
    pd = pytest.importorskip("pandas", reason="pandas (the parquet extra) is not installed")
    pytest.importorskip("pyarrow", reason="pyarrow (the parquet extra) is not installed")
    out = run.invoke(app, ["results", "export", str(store.path), "--format", "parquet", "-o",
                           str(tmp_path / "r.parquet"), "--metric", ROWS[0].metric])
    assert out.exit_code == 0, out.output
    assert pd.read_parquet(tmp_path / "r.parquet")["metric"].unique().tolist() == [ROWS[0].metric]
    shown = run.invoke(app, ["results", "show", str(store.path)])
    assert shown.exit_code == 0 and ROWS[0].metric in shown.stdout


def test_cli_export_errors_are_clear(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medtransfer.cli import app

    run = CliRunner()
    empty = tmp_path / "empty.sqlite"
    ResultStore(empty).close()
    out = run.invoke(app, ["results", "export", str(empty)])
    assert out.exit_code != 0 and "holds no results" in str(out.exception)
    assert not (tmp_path / "empty.csv").exists()
    out = run.invoke(app, ["results", "export", str(empty), "--format", "xlsx"])
    assert "Unknown export format 'xlsx'" in str(out.exception)
    out = run.invoke(app, ["results", "export", str(empty), "-o", str(empty)])
    assert "would overwrite the store" in str(out.exception)
    out = run.invoke(app, ["results", "show", str(tmp_path / "nope.sqlite")])
    assert "No results store at" in str(out.exception) and not (tmp_path / "nope.sqlite").exists()


# ---------------------------------------------------------------- per-sample predictions (schema version 2)


def test_predictions_round_trip_exactly_and_compressed(store: ResultStore) -> None:
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 500), rng.dirichlet(np.ones(3), 500)
    store.start(_cell())
    store.finish("cell000", ROWS, weights_sha256=None, predictions=Predictions("multi-class", y, p))
    got = store.predictions("cell000")
    assert got is not None and got.task == "multi-class" and got.n == 500 and got.split == "test"
    np.testing.assert_array_equal(got.y_true, y)
    np.testing.assert_array_equal(got.y_score, p)  # bit-exact: a metric recomputed from them is the stored one
    assert got.y_score.dtype == p.dtype and got.y_true.dtype == y.dtype
    blob = store._conn.execute("SELECT length(y_true) FROM predictions").fetchone()[0]
    assert blob < y.nbytes / 4  # labels 0..2 in int64 compress well
    assert store.cells_with_predictions() == {"cell000"} and store.predictions("cell000", "val") is None


def test_predictions_go_with_their_cell(store: ResultStore) -> None:
    preds = Predictions("binary", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4]))
    store.start(_cell())
    with pytest.raises(ConfigError):  # a failed finish keeps no predictions either
        store.finish("cell000", [*ROWS, ResultRow("auc", "test", float("nan"))], weights_sha256=None,
                     predictions=preds)
    assert store.predictions("cell000") is None
    store.finish("cell000", ROWS, weights_sha256=None, predictions=preds)
    store.start(_cell())  # a re-run drops them with the rows
    assert store.predictions("cell000") is None and store.cells_with_predictions() == set()
    with pytest.raises(ConfigError, match="y_true has 3 samples but y_score has 2"):
        Predictions("binary", np.array([0, 1, 1]), np.array([0.2, 0.7]))


def _version_1_store(path: Path) -> None:
    """A store as medtransfer wrote it before the predictions table (schema version 1)."""
    with ResultStore(path) as s:
        s.start(_cell())
        s.finish("cell000", ROWS, weights_sha256=None)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP TABLE predictions")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()


def test_a_version_1_store_is_read_as_is_and_migrated_when_written(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _version_1_store(path)
    before = path.read_bytes()
    ro = ResultStore.open_read_only(path)  # a report of an old store: readable, left untouched
    assert len(ro.results()) == 3 and ro.predictions("cell000") is None and ro.cells_with_predictions() == set()
    ro.close()
    assert path.read_bytes() == before
    with ResultStore(path) as s:  # opened for writing: migrated in place, its results kept
        assert len(s.results()) == 3 and s.done_cells() == {"cell000"}
        s.start(_cell(1))
        s.finish("cell001", ROWS, weights_sha256=None,
                 predictions=Predictions("binary", np.array([0, 1]), np.array([0.3, 0.6])))
        assert s.cells_with_predictions() == {"cell001"}
        version = s._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION) == "2"


WRITER = LOAD_STORE + """
store = S.ResultStore(sys.argv[2], timeout=60)
for i in range(int(sys.argv[3]), int(sys.argv[3]) + int(sys.argv[4])):
    cell = S.Cell(f"c{i:07d}", "m", "d", "p", seed=i)
    store.start(cell)
    store.finish(cell.cell_id, [S.ResultRow(f"m{k}", "test", k / 10) for k in range(3)], weights_sha256=None)
"""


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    # two bench runs pointed at one store: WAL and BEGIN IMMEDIATE serialise their transactions
    path = tmp_path / "shared.sqlite"
    ResultStore(path).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_module.__file__, str(path), str(offset), "150"],
                              stderr=subprocess.PIPE, text=True, env=env) for offset in (0, 10_000)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with ResultStore(path) as s:
        assert len(s.done_cells()) == 300 and len(s.results()) == 900
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_executor_may_give_the_cells_compute_time(store: ResultStore) -> None:
    store.start(_cell(0))
    store.finish("cell000", ROWS, weights_sha256=None, duration_s=1.25)  # a Ray task's own time, not its queueing
    store.start(_cell(1))
    store.finish("cell001", ROWS, weights_sha256=None)
    durations = {c["cell_id"]: c["duration_s"] for c in store.cells()}
    assert durations["cell000"] == 1.25 and 0 <= durations["cell001"] < 1.25


def test_meta_keeps_json_facts_about_the_store(store: ResultStore) -> None:
    assert store.meta("published") is None
    store.set_meta("published", [{"model": "m", "value": 0.5}])
    store.set_meta("published", [{"model": "m", "value": 0.75}])  # replaced, not duplicated
    assert store.meta("published") == [{"model": "m", "value": 0.75}]
    with pytest.raises(ConfigError, match="'schema_version' is the store's own"):
        store.set_meta("schema_version", 9)
