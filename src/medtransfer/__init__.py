"""medtransfer: which pretrained model to start from for a medical-imaging task, how much it helps, and why."""

from __future__ import annotations

__version__ = "0.1.0"
