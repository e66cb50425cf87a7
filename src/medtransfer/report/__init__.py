"""Tables (and later plots and a static page) built from the results store alone."""

from __future__ import annotations

from medtransfer.report.tables import pivot, results_table

__all__ = ["pivot", "results_table"]
