"""Frozen and trained evaluation protocols, and the metrics they report.

The protocols import torch and scikit-learn (seconds); they load on first use of a name below, so that
`medtransfer.protocols.metrics` (numpy alone) serves the report without them. `medtransfer.protocols.knn` is the
kNN module (its function: ``from medtransfer.protocols.knn import knn``): a lazy package attribute of the same
name as a submodule would flip between the two depending on what was imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtransfer.protocols.base import ClassificationResult, Features
from medtransfer.registry import lazy_attributes

if TYPE_CHECKING:
    from medtransfer.protocols.fewshot import FewShotConfig, few_shot
    from medtransfer.protocols.knn import KNNConfig
    from medtransfer.protocols.linear import LinearConfig, linear_probe
    from medtransfer.protocols.registry import PROTOCOLS

_LAZY = {"FewShotConfig": "fewshot", "few_shot": "fewshot", "KNNConfig": "knn",
         "LinearConfig": "linear", "linear_probe": "linear", "PROTOCOLS": "registry"}

__all__ = ["PROTOCOLS", "ClassificationResult", "Features", "FewShotConfig", "KNNConfig", "LinearConfig", "few_shot",
           "linear_probe"]

__getattr__ = lazy_attributes(__name__, _LAZY)
