"""Run a grid on a Ray cluster: each cell a Ray task, the driver alone writes the store.

`run_grid_ray` computes exactly what `medtransfer.runner.local.run_grid` computes (the same `frozen_outcome` and
`image_outcome` per cell); only where changes:

* each (model, dataset) pair's features are extracted once, by one task, and shared through Ray's object store
  with the pair's frozen cells (linear, kNN, few-shot), each a CPU task;
* cells that train on or look at images (finetune, segment, the analyses) are tasks that ask for a GPU when the
  cluster has one (a CPU otherwise); their pictures come back to the driver as bytes and are written beside
  the store, so workers need no shared file system for them;
* the driver marks a cell running when it submits it and writes each finished cell in one transaction the moment
  its task returns. A killed driver or a lost worker loses at most the running cells (Ray retries a task whose
  worker died); running the grid again computes only the cells that are not done.

Pretraining steps of a spec run on the driver before the grid, as in the local executor.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medtransfer import data as mdata
from medtransfer._progress import say
from medtransfer.errors import CellError, ConfigError
from medtransfer.features import FeatureSet
from medtransfer.models import create
from medtransfer.runner.local import (
    CellOutcome,
    RunSummary,
    fail_cells,
    figure_path,
    frozen_outcome,
    grouped,
    image_outcome,
    on_images,
    pair_features,
    plan_grid,
    store_outcome,
)
from medtransfer.runner.pretraining import model_source, run_pretraining
from medtransfer.runner.spec import GridSpec
from medtransfer.runner.store import Cell, ResultStore

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0  # an address that does not answer within this is an error, before anything runs


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("The Ray executor needs Ray, which is not installed. Install it with "
                          "`pip install 'medtransfer[ray]'`, or run the grid locally (drop --executor ray).") from e
    return ray


def check_address(address: str | None, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ConfigError within about `timeout` seconds when a Ray address does not answer as a Ray cluster.

    ``host:port`` is a cluster's GCS: it must answer Ray's GetClusterId call (an authentication refusal is an
    answer: `ray.init` brings the token); anything listening there that is not Ray (a proxy, another server) is
    refused too, where `ray.init` would retry for a minute. ``ray://host:port`` (Ray Client) must accept a
    connection. None, ``auto`` and ``local`` are left to Ray, which answers at once.
    """
    if address in (None, "", "auto", "local"):
        return
    client = "://" in address
    url = urlparse(address if client else f"ray://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001) "
                          "or 'auto'.")
    why = _tcp_problem(host, port, timeout) if client else _gcs_problem(f"{host}:{port}", timeout)
    if why:
        raise ConfigError(f"The Ray address {address!r} does not answer as a Ray cluster ({why}, within "
                          f"{timeout:g} s); nothing was run. Start a cluster there (`ray start --head`), pass "
                          "--address auto for the cluster on this machine, or drop --address to start a local "
                          "one.")


def _tcp_problem(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return str(e) or type(e).__name__


def _gcs_problem(target: str, timeout: float) -> str | None:
    """None when `target` answers Ray's GCS GetClusterId call (or refuses it for a missing token)."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # no grpcio (the ray extra brings it) or a Ray without these stubs: a TCP connection is left
        host, _, port = target.rpartition(":")
        return _tcp_problem(host, int(port), timeout)
    with grpc.insecure_channel(target) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return None
            details = next(iter((e.details() or "").splitlines()), "")
            return f"{e.code().name}: {details[:120]}".rstrip(": ")
    return None


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to the cluster at `address` (None: start a local one with `num_cpus`), yield the ray module,
    shut down on exit. A cluster that cannot be reached is a ConfigError before anything runs."""
    ray = _import_ray()
    check_address(address)
    if ray.is_initialized():  # a caller's session (a notebook, a test): use it, leave it running
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if address in (None, "", "local"):  # a new local cluster: never one that RAY_ADDRESS or `ray start` left
        kwargs |= {"address": "local", "num_cpus": num_cpus}
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ConfigError(f"No Ray cluster at {address!r} ({e}); nothing was run. Start one with `ray start "
                          "--head`, or drop --address to start a local one.") from e
    try:
        yield ray
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- what the workers run


def _features_task(spec: GridSpec, model_name: str, dataset_name: str,
                   precision: str) -> tuple[dict[str, FeatureSet], mdata.DatasetCard]:
    return pair_features(spec, model_name, dataset_name, progress=False, precision=precision)


def _frozen_task(cell: Cell, pair: tuple[dict[str, FeatureSet], mdata.DatasetCard]) -> CellOutcome:
    feats, card = pair
    t0 = time.perf_counter()
    return replace(frozen_outcome(cell, feats, card), compute_s=time.perf_counter() - t0)


def _image_task(spec: GridSpec, cell: Cell, store_name: str) -> tuple[CellOutcome, dict[str, bytes]]:
    """Train or analyse in a scratch folder; return the outcome and the pictures' bytes by file name."""
    t0 = time.perf_counter()
    model = create(model_source(spec, cell.model))
    with tempfile.TemporaryDirectory(prefix="medtransfer-ray-") as scratch:
        outcome = image_outcome(spec, cell, model, figure_path(Path(scratch) / store_name, cell), progress=False)
        folder = Path(scratch) / f"{Path(store_name).stem}-figures"
        files = {f.name: f.read_bytes() for f in sorted(folder.iterdir())} if folder.is_dir() else {}
        if "files" in outcome.extra:  # paths as the driver will write them
            outcome.extra["files"] = [Path(f).name for f in outcome.extra["files"]]
    return replace(outcome, compute_s=time.perf_counter() - t0), files


# ---------------------------------------------------------------- the driver


@dataclass(frozen=True)
class _Pending:
    cells: tuple[Cell, ...]
    kind: str  # "frozen" or "image"


def _resources(ray: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options of a CPU task and of an image task (one GPU when the cluster has any)."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    return {"num_cpus": 1}, ({"num_gpus": 1, "num_cpus": 1} if gpus >= 1 else {"num_cpus": 1})


def run_grid_ray(spec: GridSpec, store: ResultStore, *, address: str | None = None, force: bool = False,
                 num_cpus: int | None = None, progress: bool = False) -> RunSummary:
    """Run every cell of `spec` that `store` does not hold yet as Ray tasks; the results are the local
    executor's (`medtransfer.runner.local.run_grid`), written by this process alone.

    Args:
        spec: the grid.
        store: the results store (only the driver opens it).
        address: a running cluster (``auto``, ``host:port``, ``ray://host:port``); None starts a local one.
        force: recompute cells the store holds already.
        num_cpus: CPUs of a local cluster (None: all of this machine's).
        progress: progress lines for the driver's own work (pretraining).
    """
    check_address(address)  # before the spec's pretraining or anything else runs
    plan = plan_grid(spec, store, force=force)
    spec, summary = plan.spec, plan.summary
    if not plan.todo:
        say("grid done: nothing to run, %d cells already in the store", summary.skipped)
        return summary
    with ray_session(address, num_cpus=num_cpus) as ray:
        unmade = run_pretraining(spec, progress=progress)
        cpu, image = _resources(ray)
        features = ray.remote(_features_task).options(**cpu)
        frozen = ray.remote(_frozen_task).options(**cpu)
        imaging = ray.remote(_image_task).options(**image)
        pending: dict[Any, _Pending] = {}
        for (model_name, dataset_name), group in grouped(plan.todo).items():
            if model_name in unmade:
                fail_cells(store, group, CellError(unmade[model_name]), summary)
                continue
            for cell in (c for c in group if on_images(c)):
                store.start(cell)
                pending[imaging.remote(spec, cell, store.path.name)] = _Pending((cell,), "image")
            cells = tuple(c for c in group if not on_images(c))
            if cells:
                # not waited on: the features stay in the object store (never copied to the driver), and when
                # their task fails, every frozen task that takes them fails with its error
                pair = features.remote(spec, model_name, dataset_name, plan.precision)
                for cell in cells:
                    store.start(cell)
                    pending[frozen.remote(cell, pair)] = _Pending((cell,), "frozen")
        say("grid %r: %d cells submitted to Ray (%s)", spec.name, len(plan.todo),
            ", ".join(f"{k} {v:g}" for k, v in sorted(ray.cluster_resources().items()) if k in ("CPU", "GPU")))
        _collect(ray, store, pending, summary)
    say("grid done: %d cells run, %d already in the store, %d failed", summary.done, summary.skipped,
        len(summary.failed))
    return summary


def _collect(ray: Any, store: ResultStore, pending: dict[Any, _Pending], summary: RunSummary) -> None:
    """Store each task's cell as it finishes, or its error (a failed features task: the error of each of its
    pair's frozen tasks)."""
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ref)
        try:
            value = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a task's error (with its remote traceback) is the cell's
            fail_cells(store, list(job.cells), _cause(e), summary)
            continue
        (cell,) = job.cells
        if job.kind == "image":
            value, files = value
            _write_figures(store, files)
            if "files" in value.extra:
                folder = Path(store.path).parent / f"{Path(store.path).stem}-figures"
                value = replace(value, extra=value.extra | {"files": [str(folder / f) for f in value.extra["files"]]})
        store_outcome(store, cell, value)
        summary.done += 1
        say("cell %d/%d: %s %s %s seed=%d", summary.skipped + summary.done + len(summary.failed), summary.total,
            cell.model, cell.dataset, cell.protocol, cell.seed)


def _cause(error: BaseException) -> BaseException:
    """The exception a task raised (Ray wraps it), so the store records the cell's own error."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def _write_figures(store: ResultStore, files: dict[str, bytes]) -> None:
    if not files:
        return
    folder = Path(store.path).parent / f"{Path(store.path).stem}-figures"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = folder / name
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # a kill never leaves half a picture

