"""Frozen and trained evaluation protocols, and the metrics they report."""

from __future__ import annotations

from medtransfer.protocols.base import ClassificationResult, Features
from medtransfer.protocols.fewshot import FewShotConfig, few_shot
from medtransfer.protocols.knn import KNNConfig, knn
from medtransfer.protocols.linear import LinearConfig, linear_probe
from medtransfer.protocols.registry import PROTOCOLS

__all__ = ["PROTOCOLS", "ClassificationResult", "Features", "FewShotConfig", "KNNConfig", "LinearConfig", "few_shot",
           "knn", "linear_probe"]
