"""The results store: one SQLite file with the job table of a benchmark grid and its results in long format.

Why SQLite: it is in the standard library, a file can be copied or opened by any tool, and a transaction makes
"a cell's results are all there or none are" true even when the process is killed. The store runs in WAL mode
so that reports can read while the driver writes; only the driver process writes (Ray workers return results
to it). Each finished cell is one transaction (`ResultStore.finish`): a kill loses at most the running cell,
and a cell's rows are replaced, never duplicated, when it runs again.

Tables:
    ``cells``: one row per cell (its config hash ``cell_id``), with status ``running``/``done``/``failed``,
    attempts, error, weights sha256, library versions and timings.
    ``results``: one row per (cell, metric, split), carrying the cell's model/dataset/protocol/seed/fraction,
    weights sha256 and versions, so an export needs no join.
    ``predictions``: one row per (cell, split) of the per-sample test labels and predicted probabilities the
    cell's metrics were computed from (zlib-compressed .npy), so that two models can be compared on the same test
    images with a paired bootstrap. Added in schema version 2; a version-1 store gains the (empty) table when it
    is next opened for writing.
    ``meta``: the schema version.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import math
import platform
import sqlite3
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError, StoreError, UnknownNameError
from medtransfer.registry import did_you_mean

SCHEMA_VERSION = 2  # 2: the predictions table
STATUSES = ("running", "done", "failed")
RESULT_FILTERS = ("cell_id", "model", "dataset", "protocol", "seed", "fraction", "metric", "split")

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL, protocol TEXT NOT NULL,
    seed INTEGER NOT NULL, fraction REAL, config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')), error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, weights_sha256 TEXT, versions TEXT, extra TEXT,
    started_at TEXT, finished_at TEXT, duration_s REAL
);
CREATE TABLE IF NOT EXISTS results (
    cell_id TEXT NOT NULL REFERENCES cells (cell_id), model TEXT NOT NULL, dataset TEXT NOT NULL,
    protocol TEXT NOT NULL, seed INTEGER NOT NULL, fraction REAL, metric TEXT NOT NULL, split TEXT NOT NULL,
    value REAL NOT NULL, ci_low REAL, ci_high REAL, n INTEGER, weights_sha256 TEXT, versions TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (cell_id, metric, split)
);
CREATE INDEX IF NOT EXISTS results_by_cell ON results (cell_id);
CREATE TABLE IF NOT EXISTS predictions (
    cell_id TEXT NOT NULL REFERENCES cells (cell_id), split TEXT NOT NULL, task TEXT NOT NULL, n INTEGER NOT NULL,
    y_true BLOB NOT NULL, y_score BLOB NOT NULL,
    PRIMARY KEY (cell_id, split)
);
"""
_RESULT_COLUMNS = ("cell_id", "model", "dataset", "protocol", "seed", "fraction", "metric", "split", "value",
                   "ci_low", "ci_high", "n", "weights_sha256", "versions", "created_at")
_JSON_COLUMNS = ("config", "versions", "extra")


@dataclass(frozen=True)
class Cell:
    """One point of a benchmark grid.

    Attributes:
        cell_id: the hash of the cell's resolved config (`medtransfer.config.config_hash`); keys the store.
        model: model registry name.
        dataset: dataset registry name.
        protocol: protocol registry name.
        seed: the cell's seed.
        fraction: label fraction of the training split; None for all labels.
        config: the resolved config, JSON-serialisable.
    """

    cell_id: str
    model: str
    dataset: str
    protocol: str
    seed: int
    fraction: float | None = None
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ResultRow:
    """One number of a cell: a metric on a split, with its interval and sample count."""

    metric: str
    split: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Predictions:
    """A cell's per-sample predictions on one split: what its metrics were computed from.

    Attributes:
        task: ``binary``, ``multi-class``, ``multi-label`` or ``ordinal``, as the metrics take it.
        y_true: (N,) integer labels, or (N, C) 0/1 targets for multi-label.
        y_score: (N, C) probabilities (binary also (N,)).
        split: the split they were made on.
    """

    task: str
    y_true: np.ndarray = field(repr=False)
    y_score: np.ndarray = field(repr=False)
    split: str = "test"

    def __post_init__(self) -> None:
        y_true, y_score = np.asarray(self.y_true), np.asarray(self.y_score)
        if len(y_true) != len(y_score):
            raise ConfigError(f"Predictions.y_true has {len(y_true)} samples but y_score has {len(y_score)}; "
                              "pass the labels and the probabilities of the same samples.")
        object.__setattr__(self, "y_true", y_true)
        object.__setattr__(self, "y_score", y_score)

    @property
    def n(self) -> int:
        return len(self.y_true)


def _pack(a: np.ndarray) -> bytes:
    """An array as zlib-compressed .npy bytes (dtype and shape kept exactly; no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(a), allow_pickle=False)
    return zlib.compress(buffer.getvalue(), 6)


def _unpack(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _seconds_between(start: str | None, end: str) -> float | None:
    """Seconds from ISO timestamp `start` to `end`; None for a cell that never recorded a start."""
    if start is None:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that decide a result; None for a package that is not installed.

    Read from package metadata, so torch is not imported just to learn its version (that takes seconds).
    """
    from medtransfer import __version__

    out = {"python": platform.python_version(), "medtransfer": __version__, "torch": _version("torch"),
           "numpy": _version("numpy"), "scikit-learn": _version("scikit-learn")}
    torch = sys.modules.get("torch")
    if torch is not None:  # already imported by the run: CUDA is part of what produced the numbers
        out["cuda"] = getattr(torch.version, "cuda", None)
    return out


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays (a chosen C, a grid of scores) as plain JSON; anything else as its str()."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _csv_field(value: Any) -> Any:
    """A CSV field: floats as repr() (which round-trips exactly), None as empty."""
    return "" if value is None else repr(value) if isinstance(value, float) else value


def _loads(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON_COLUMNS:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def _newer_schema(path: Path, found: str) -> StoreError:
    return StoreError(f"Results store {str(path)!r} has {found}, but this medtransfer reads versions up to "
                      f"{SCHEMA_VERSION}. Upgrade medtransfer (pip install -U medtransfer) or write to a new store "
                      "path.")


class ResultStore:
    """The SQLite results store of a benchmark.

    Args:
        path: the database file; parent folders are created.
        timeout: seconds to wait for a lock held by another connection (a report reading, say).

    Examples:
        >>> import tempfile, os
        >>> with ResultStore(os.path.join(tempfile.mkdtemp(), "results.sqlite")) as store:
        ...     cell = Cell("3f2a", "resnet18", "breastmnist-64", "knn", seed=0)
        ...     store.start(cell)
        ...     rows = [ResultRow("auc", "test", 0.91, 0.88, 0.94, 156)]
        ...     store.finish(cell.cell_id, rows, weights_sha256="ab12")
        ...     store.done_cells()
        {'3f2a'}
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below states BEGIN/COMMIT itself.
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup(timeout)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise StoreError(f"{str(self.path)!r} is not a medtransfer results store ({e}). Pass the path of "
                             "an existing store or of a new file.") from e
        except StoreError:
            self._conn.close()
            raise

    @classmethod
    def open_read_only(cls, path: str | Path, *, timeout: float = 30.0) -> ResultStore:
        """An existing store, opened read-only: for exports and reports, which must never create, migrate or
        write a file. A missing file, a file that is not a medtransfer store (a foreign SQLite database, a
        corrupted file) or a newer schema is a StoreError, and the file is left exactly as it was."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"No results store at {str(path)!r}. Run `medtransfer bench [SPEC] --store {path}` "
                             "first, or pass the path of an existing store.")
        self = cls.__new__(cls)
        self.path = path
        self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout,
                                     isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            self._conn.execute("SELECT cell_id FROM results LIMIT 1").fetchall()
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise StoreError(f"{str(path)!r} is not a medtransfer results store ({e}); it was not changed. Pass "
                             "the path of a store written by `medtransfer bench`.") from e
        if row is None or int(row["value"]) > SCHEMA_VERSION:
            self._conn.close()
            raise _newer_schema(path, "no schema version" if row is None else f"schema version {row['value']}")
        return self

    def _setup(self, timeout: float) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self._conn.execute("PRAGMA synchronous=FULL")  # a committed cell survives a power cut too
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            self._conn.execute(_META)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row["value"]) > SCHEMA_VERSION:  # checked before touching its tables
                raise _newer_schema(self.path, f"schema version {row['value']}")
            # executescript() would COMMIT on its own; one statement at a time keeps this one transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row["value"]) < SCHEMA_VERSION:  # migrate: version 1 lacked the predictions table, made above
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection; the store stays consistent on disk."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (then re-raised)."""
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back already (disk full, say)
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------ the job table

    def status(self, cell_id: str) -> str | None:
        """``running``, ``done``, ``failed``, or None for a cell the store has never seen."""
        row = self._conn.execute("SELECT status FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()
        return None if row is None else str(row["status"])

    def done_cells(self) -> set[str]:
        """The ids of the cells whose results are complete; the runner skips these."""
        return {r["cell_id"] for r in self._conn.execute("SELECT cell_id FROM cells WHERE status = 'done'")}

    def start(self, cell: Cell) -> None:
        """Mark `cell` running (attempts + 1, started now).

        A cell started again (after a failure, a kill, or on purpose) loses its previous rows in the same
        transaction: a store never holds rows of a cell that is not done.
        """
        config = json.dumps(cell.config, sort_keys=True, default=_json_default)
        with self._transaction():
            self._conn.execute("DELETE FROM results WHERE cell_id = ?", (cell.cell_id,))
            self._conn.execute("DELETE FROM predictions WHERE cell_id = ?", (cell.cell_id,))
            self._conn.execute(
                "INSERT INTO cells (cell_id, model, dataset, protocol, seed, fraction, config, status, "
                "attempts, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 1, ?) "
                "ON CONFLICT (cell_id) DO UPDATE SET status = 'running', attempts = attempts + 1, "
                "started_at = excluded.started_at, error = NULL, finished_at = NULL, duration_s = NULL, "
                "config = excluded.config",
                (cell.cell_id, cell.model, cell.dataset, cell.protocol, int(cell.seed), cell.fraction, config,
                 _now()))

    def _cell_row(self, cell_id: str) -> sqlite3.Row:
        row = self._conn.execute("SELECT * FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()
        if row is None:
            raise StoreError(f"Cell {cell_id!r} is not in the store {str(self.path)!r}; call "
                             "store.start(cell) before finish() or fail().")
        return row

    def finish(self, cell_id: str, rows: Iterable[ResultRow], *, weights_sha256: str | None,
               extra: dict[str, Any] | None = None, predictions: Predictions | None = None,
               duration_s: float | None = None) -> None:
        """Write a finished cell's rows and mark it done, in one transaction.

        The cell's old rows are deleted first, so finishing twice leaves one set. If anything fails (a NaN
        value, a repeated (metric, split), a kill) nothing of this call is kept and the cell is not done.

        Args:
            cell_id: a cell passed to `start`.
            rows: the cell's numbers; NaN interval bounds are stored as NULL, a NaN value is refused.
            weights_sha256: sha256 of the weights the cell used (None for random init).
            extra: JSON-serialisable facts about the run (chosen hyperparameters, n_train ...).
            predictions: the per-sample labels and probabilities the metrics came from (kept compressed).
            duration_s: the cell's compute time, when the executor measured it (a queued Ray task's start is its
                submission); None: the time since `start`.
        """
        packed = None if predictions is None else (predictions.split, predictions.task, predictions.n,
                                                   _pack(predictions.y_true), _pack(predictions.y_score))
        versions_json = json.dumps(versions(), sort_keys=True)
        extra_json = None if extra is None else json.dumps(extra, sort_keys=True, default=_json_default)
        with self._transaction():
            cell, now, duration = self._close_cell(cell_id)
            duration = duration if duration_s is None else float(duration_s)
            head = (cell_id, cell["model"], cell["dataset"], cell["protocol"], cell["seed"], cell["fraction"])
            tail = (weights_sha256, versions_json, now)
            # rows is consumed inside the transaction: an error half-way rolls back the rows already inserted.
            self._conn.executemany(
                f"INSERT INTO results ({', '.join(_RESULT_COLUMNS)}) VALUES ({', '.join('?' * 15)})",
                (head + self._row_values(r) + tail for r in rows))
            if packed is not None:
                self._conn.execute("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", (cell_id, *packed))
            self._conn.execute(
                "UPDATE cells SET status = 'done', error = NULL, weights_sha256 = ?, versions = ?, "
                "extra = ?, finished_at = ?, duration_s = ? WHERE cell_id = ?",
                (weights_sha256, versions_json, extra_json, now, duration, cell_id))

    def _close_cell(self, cell_id: str) -> tuple[sqlite3.Row, str, float | None]:
        """Inside a transaction: the started cell, the time now, its duration; its old rows are deleted."""
        cell = self._cell_row(cell_id)
        now = _now()
        self._conn.execute("DELETE FROM results WHERE cell_id = ?", (cell_id,))
        self._conn.execute("DELETE FROM predictions WHERE cell_id = ?", (cell_id,))
        return cell, now, _seconds_between(cell["started_at"], now)

    @staticmethod
    def _row_values(r: ResultRow) -> tuple[Any, ...]:
        if not isinstance(r, ResultRow):
            raise ConfigError(f"finish() takes ResultRow items. Got {type(r).__name__}: {r!r}.")
        if r.value is None or math.isnan(r.value):
            raise ConfigError(f"The value of {r.metric!r} on {r.split!r} is {r.value!r}; a stored result "
                              "must be a number. Fail the cell (store.fail) if the metric is undefined.")
        return (r.metric, r.split, float(r.value), _finite_or_none(r.ci_low), _finite_or_none(r.ci_high),
                None if r.n is None else int(r.n))

    def fail(self, cell_id: str, error_text: str) -> None:
        """Mark a started cell failed with its error (a traceback, say); its rows, if any, are removed."""
        with self._transaction():
            _, now, duration = self._close_cell(cell_id)
            self._conn.execute("UPDATE cells SET status = 'failed', error = ?, finished_at = ?, "
                               "duration_s = ? WHERE cell_id = ?", (error_text, now, duration, cell_id))

    # ------------------------------------------------------------ reading

    def cells(self, status: str | None = None) -> list[dict[str, Any]]:
        """The job table, optionally only cells of one `status`; JSON columns come back as dicts."""
        if status is not None and status not in STATUSES:
            raise ConfigError(f"The 'status' parameter must be one of {list(STATUSES)} or None. "
                              f"Got {status!r} instead.")
        where = "" if status is None else " WHERE status = ?"
        args = () if status is None else (status,)
        cursor = self._conn.execute(f"SELECT * FROM cells{where} ORDER BY started_at, cell_id", args)
        return [_loads(r) for r in cursor]

    def _has_predictions_table(self) -> bool:
        """False for a version-1 store opened read-only (it was never migrated)."""
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'")
        return row.fetchone() is not None

    def predictions(self, cell_id: str, split: str = "test") -> Predictions | None:
        """The per-sample predictions a cell stored on `split`; None when it stored none (few-shot, analyses,
        segmentation, or a store written before schema version 2)."""
        if not self._has_predictions_table():
            return None
        row = self._conn.execute("SELECT * FROM predictions WHERE cell_id = ? AND split = ?",
                                 (cell_id, split)).fetchone()
        if row is None:
            return None
        return Predictions(row["task"], _unpack(row["y_true"]), _unpack(row["y_score"]), split=row["split"])

    def cells_with_predictions(self, split: str = "test") -> set[str]:
        """The ids of the cells that stored per-sample predictions on `split`."""
        if not self._has_predictions_table():
            return set()
        cursor = self._conn.execute("SELECT cell_id FROM predictions WHERE split = ?", (split,))
        return {r["cell_id"] for r in cursor}

    def set_meta(self, key: str, value: Any) -> None:
        """Keep a JSON-serialisable fact about the whole store (a study's published numbers, say) under `key`."""
        if key == "schema_version":
            raise ConfigError("The key 'schema_version' is the store's own; choose another meta key.")
        text = json.dumps(value, sort_keys=True, default=_json_default)
        with self._transaction():
            self._conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                               (key, text))

    def meta(self, key: str) -> Any:
        """The value `set_meta` kept under `key`, or None."""
        if key == "schema_version":
            raise ConfigError("Read the schema version from the file's meta table; meta() holds JSON values.")
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def _select_results(self, filters: dict[str, Any]) -> sqlite3.Cursor:
        for key in filters:
            if key not in RESULT_FILTERS:
                hint = did_you_mean(key, list(RESULT_FILTERS))
                raise UnknownNameError(f"Unknown results filter {key!r}.{hint} "
                                       f"Allowed filters: {', '.join(RESULT_FILTERS)}.")
        where = " AND ".join(f"{k} = ?" for k in filters)
        sql = "SELECT * FROM results" + (f" WHERE {where}" if where else "")
        return self._conn.execute(sql + " ORDER BY rowid", tuple(filters.values()))

    def results(self, **filters: Any) -> list[dict[str, Any]]:
        """Result rows, long format, filtered by equality on any of `RESULT_FILTERS`.

        Examples:
            >>> store.results(dataset="breastmnist-64", metric="auc")  # doctest: +SKIP
        """
        return [_loads(r) for r in self._select_results(filters)]

    def to_csv(self, path: str | Path, **filters: Any) -> Path:
        """Write the (filtered) results as CSV: one row per (cell, metric, split); versions as JSON text."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(_RESULT_COLUMNS)
            for row in self._select_results(filters):
                writer.writerow([_csv_field(row[c]) for c in _RESULT_COLUMNS])
        return path

    def to_json(self, path: str | Path, **filters: Any) -> Path:
        """Write the (filtered) results as a JSON list of row objects (versions as an object)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results(**filters), indent=1, default=_json_default))
        return path

    def to_parquet(self, path: str | Path, **filters: Any) -> Path:
        """Write the (filtered) results as Parquet; needs pandas and pyarrow."""
        try:
            import pandas as pd
            import pyarrow  # noqa: F401  (pandas' Parquet engine)
        except ImportError as e:
            raise ImportError(f"Parquet export needs the package {e.name!r}, which is not installed. "
                              "Install it with `pip install pandas pyarrow`, or export CSV with "
                              "store.to_csv().") from e
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [dict(r) for r in self._select_results(filters)]
        pd.DataFrame(rows, columns=list(_RESULT_COLUMNS)).to_parquet(path, engine="pyarrow", index=False)
        return path
