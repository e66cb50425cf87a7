"""Frozen and trained evaluation protocols, and the metrics they report."""

from __future__ import annotations

from medtransfer.protocols.base import ClassificationResult, Features
from medtransfer.protocols.linear import LinearConfig, linear_probe
from medtransfer.protocols.registry import PROTOCOLS, required_splits

__all__ = ["PROTOCOLS", "ClassificationResult", "Features", "LinearConfig", "linear_probe", "required_splits"]
