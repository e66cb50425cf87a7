"""Tables (and later plots and a static page) built from the results store alone."""

from __future__ import annotations

from medtransfer.report.curves import CurvePoint, label_efficiency
from medtransfer.report.tables import pivot, results_table

__all__ = ["CurvePoint", "label_efficiency", "pivot", "results_table"]
