"""The protocol registry: a name -> a function from split features to a ClassificationResult."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from medtransfer.config import from_dict
from medtransfer.errors import DataError
from medtransfer.protocols.base import ClassificationResult, Features, check_int
from medtransfer.protocols.fewshot import FewShotConfig, few_shot
from medtransfer.protocols.knn import KNNConfig, check_args, knn
from medtransfer.protocols.linear import linear_probe, resolve_config
from medtransfer.registry import Registry


class ProtocolFn(Protocol):
    """`run(splits, task=..., metrics=..., seed=..., options=...)`: features per split in, a result out."""

    def __call__(self, splits: Mapping[str, Features], *, task: str, metrics: tuple[str, ...], seed: int,
                 options: Mapping[str, Any]) -> ClassificationResult: ...


PROTOCOLS: Registry[ProtocolFn] = Registry("protocol")


def _need(splits: Mapping[str, Features], name: str, protocol: str) -> Features:
    if name not in splits:
        raise DataError(f"Protocol {protocol!r} needs a {name!r} split; got {sorted(splits)}.")
    return splits[name]


@PROTOCOLS.register("linear")
def _linear(splits: Mapping[str, Features], *, task: str, metrics: tuple[str, ...], seed: int,
            options: Mapping[str, Any]) -> ClassificationResult:
    opts = dict(options)  # LinearConfig fields, plus the preset name ("default" or "anton2022")
    return linear_probe(_need(splits, "train", "linear"), _need(splits, "test", "linear"), task=task, metrics=metrics,
                        val=splits.get("val"), seed=seed, preset=opts.pop("preset", "default"), **opts)


@PROTOCOLS.register("knn")
def _knn(splits: Mapping[str, Features], *, task: str, metrics: tuple[str, ...], seed: int,
         options: Mapping[str, Any]) -> ClassificationResult:
    cfg = from_dict(KNNConfig, options, where="knn options")
    return knn(_need(splits, "train", "knn"), _need(splits, "test", "knn"), task=task, metrics=metrics, seed=seed,
               **dataclasses.asdict(cfg))


@PROTOCOLS.register("fewshot")
def _fewshot(splits: Mapping[str, Features], *, task: str, metrics: tuple[str, ...], seed: int,
             options: Mapping[str, Any]) -> ClassificationResult:
    parts = [splits[name] for name in ("train", "val", "test") if name in splits]  # the reference pools all images
    pool = Features(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
    # n_way defaults to min(5, classes): the reference runs 2-way on binary datasets and 5-way on 5-class ones
    n_way = {"n_way": min(FewShotConfig.n_way, len(np.unique(pool.y)))}
    cfg = from_dict(FewShotConfig, n_way | dict(options), where="fewshot options")
    return few_shot(pool, seed=seed, **dataclasses.asdict(cfg))  # always plain accuracy (PROTOCOLS.md §1.5)


def check_options(protocol: str, options: Mapping[str, Any]) -> None:
    """Raise ConfigError (or UnknownNameError) when `options` are not settings of the frozen `protocol`; the
    checks need no data, so a spec is refused before its first cell (a k above n_train is found at the cell)."""
    opts = dict(options)
    if protocol == "linear":
        resolve_config(opts.pop("preset", "default"), **opts)
    elif protocol == "knn":
        cfg = from_dict(KNNConfig, opts, where="knn options")
        # the checks knn makes itself, with n_train unknown here
        check_args(cfg.k, cfg.metric, cfg.weighting, cfg.temperature, cfg.chunk_size, None)
    elif protocol == "fewshot":
        cfg_fs = from_dict(FewShotConfig, opts, where="fewshot options")
        for name in ("n_support", "n_query", "episodes"):
            check_int("few_shot", name, getattr(cfg_fs, name), 1)
        check_int("few_shot", "n_way", cfg_fs.n_way, 2)
