"""The pretraining steps of a bench spec: run before the grid, their models enter the grid by name.

A spec declares ``pretrain: [{name: simclr-phantom, method: simclr, dataset: phantom-binary-32, epochs: 2}]``
(any `PretrainConfig` field, plus ``name`` and an optional ``out`` folder, default ``<name>`` beside the results
store, so ``runs/<name>`` for ``runs/default.sqlite``) and lists
``simclr-phantom`` under ``models``. A finished step is not run again (its folder records its config).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from medtransfer.errors import ConfigError

log = logging.getLogger(__name__)
_STEP_KEYS = ("name", "out")  # the step's own keys; the rest are PretrainConfig fields


class WithSteps(Protocol):
    """What these functions read of a spec (a `runner.spec.GridSpec`, which imports this module)."""

    @property
    def pretrain(self) -> tuple[dict[str, Any], ...]: ...

    @property
    def data_root(self) -> str | None: ...


S = TypeVar("S", bound=WithSteps)


def check_steps(steps: Sequence[Mapping[str, Any]]) -> None:
    """Raise when a pretraining step lacks name/method/dataset or two steps share a name."""
    names = []
    for i, step in enumerate(steps):
        missing = [k for k in ("name", "method", "dataset") if k not in step]
        if not isinstance(step, Mapping) or missing:
            raise ConfigError(f"pretrain[{i}] of the spec needs the keys name, method and dataset (missing: "
                              f"{missing}). Example: {{name: simclr-phantom, method: simclr, "
                              f"dataset: phantom-binary-32, epochs: 2}}.")
        names.append(step["name"])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"The pretraining steps of the spec must have distinct names; {dup} appear twice.")


def with_folders(spec: S, root: Path) -> S:
    """`spec` with every step lacking an ``out`` folder given ``root/<name>`` (the run_grid store's folder)."""
    steps = tuple(dict(s) if s.get("out") else {**s, "out": str(root / s["name"])} for s in spec.pretrain)
    return dataclasses.replace(spec, pretrain=steps)  # type: ignore[type-var]  # S is a dataclass


def recipe(spec: WithSteps, model: str) -> dict[str, Any] | None:
    """What keys the cells of a pretrained model: its step without the output folder (None for other models)."""
    step = step_of(spec, model)
    return None if step is None else {k: v for k, v in step.items() if k != "out"}


def step_of(spec: WithSteps, model: str) -> dict[str, Any] | None:
    """The pretraining step that makes the grid model `model`, or None for a registered model / folder."""
    return next((dict(s) for s in spec.pretrain if s["name"] == model), None)


def step_folder(step: Mapping[str, Any]) -> Path:
    """Where a step's model folder is written: its ``out``, else ``runs/<name>`` (run_grid: beside the store)."""
    return Path(step.get("out") or Path("runs") / step["name"])


def model_source(spec: WithSteps, model: str) -> str:
    """What `models.create` takes for the grid model `model`: its step's folder, or the name itself."""
    step = step_of(spec, model)
    return str(step_folder(step)) if step is not None else model


def step_config(spec: WithSteps, step: Mapping[str, Any]) -> Any:
    """The `PretrainConfig` of a step (its keys but name/out, the spec's data root); raises ConfigError."""
    from medtransfer.config import from_dict
    from medtransfer.pretrain import PretrainConfig

    settings = {k: v for k, v in step.items() if k not in _STEP_KEYS}
    settings.setdefault("data_root", spec.data_root)
    # one device: Lightning's DDP launcher re-runs the calling command in every rank, which for a bench would
    # run the whole grid once per device. Multi-GPU pretraining: `medtransfer pretrain`, then list the folder.
    settings.setdefault("devices", 1)
    return from_dict(PretrainConfig, settings, where=f"pretrain step {step['name']!r}")


def run_pretraining(spec: WithSteps, *, progress: bool = False) -> dict[str, str]:
    """Run the spec's pretraining steps (finished ones return at once); returns {step name: error} of the failed.

    The runner fails a failed step's cells with that error (its folder may hold an older recipe's model, which
    must not be scored under the new recipe's cell ids); the rest of the grid runs.
    """
    from medtransfer.pretrain import pretrain

    failed: dict[str, str] = {}
    for step in spec.pretrain:
        try:
            res = pretrain(step_config(spec, step), step_folder(step), progress=progress)
        except Exception as e:  # noqa: BLE001 - the grid goes on; the step's cells fail with their own error
            message = f"pretrain step {step['name']!r}: {type(e).__name__}: {e}"
            log.error("%s", message)
            failed[step["name"]] = message
            continue
        log.info("pretrain step %r: %s (final loss %.4f)", step["name"], res.folder, res.record["final_loss"])
    return failed
