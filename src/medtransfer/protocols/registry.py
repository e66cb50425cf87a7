"""The protocol registry: a name -> a function from split features to a ClassificationResult."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from medtransfer.config import from_dict
from medtransfer.errors import DataError
from medtransfer.protocols.base import ClassificationResult, Features
from medtransfer.protocols.linear import LinearConfig, linear_probe
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
    cfg = from_dict(LinearConfig, options, where="linear options")
    return linear_probe(_need(splits, "train", "linear"), _need(splits, "test", "linear"), task=task,
                        metrics=metrics, val=splits.get("val"), seed=seed, cfg=cfg)


def required_splits(protocol: str) -> tuple[str, ...]:
    """The splits a protocol reads (val is used when the dataset has one)."""
    PROTOCOLS.get(protocol)
    return ("train", "val", "test")
