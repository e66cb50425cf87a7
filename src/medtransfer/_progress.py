"""Progress lines for logs and pipes, where no progress bar is drawn.

Long loops (feature extraction, training steps, grid cells) report through the ``medtransfer.progress``
logger: a line when they start, then at most one every `EVERY_S` seconds, then one when they end. Nothing is
printed unless that logger is enabled at INFO: the CLI enables it, on stderr, whenever it draws no bars (output
to a file or pipe, or ``--json``), so stdout stays clean.
"""

from __future__ import annotations

import logging
import sys
import time

LOG = logging.getLogger("medtransfer.progress")
EVERY_S = 10.0  # seconds between two lines of one loop


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each line (a test runner may swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it; the property ignores that
        pass


def enable() -> None:
    """Send progress lines to stderr as ``[medtransfer HH:MM:SS] message`` (once; later calls do nothing)."""
    if any(isinstance(h, _StderrHandler) for h in LOG.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("[medtransfer %(asctime)s] %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def say(message: str, *args: object) -> None:
    """One progress line now (a loop's start or end, a grid cell)."""
    LOG.info(message, *args)


class Ticker:
    """Counts a loop's work and writes ``label: done/total unit (rate unit/s) extra`` at a steady pace.

    Args:
        label: what the loop does, e.g. ``features resnet18-small / breastmnist:train``.
        total: the amount of work, or None when unknown.
        unit: what `advance` counts (``images``, ``steps``).
        every: seconds between lines.
    """

    def __init__(self, label: str, total: int | None = None, *, unit: str = "images", every: float = EVERY_S) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.done, self.start, self.last = 0, time.monotonic(), float("-inf")
        self.enabled = LOG.isEnabledFor(logging.INFO)

    def advance(self, n: int = 1, extra: str = "") -> None:
        """Add `n` to the count; writes a line if `every` seconds passed since the last one (or none was written)."""
        self.done += n
        if self.enabled and time.monotonic() - self.last >= self.every:
            self._line(extra)

    def finish(self, extra: str = "") -> None:
        """The loop's last line."""
        if self.enabled:
            self._line(extra)

    def _line(self, extra: str) -> None:
        now = time.monotonic()
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        LOG.info("%s: %d%s %s (%.1f %s/s)%s", self.label, self.done, of, self.unit, rate, self.unit,
                 f" {extra}" if extra else "")
