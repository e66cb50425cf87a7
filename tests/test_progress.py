"""Progress lines: silent until enabled, then at a steady pace on the current stderr."""

from __future__ import annotations

import logging

import pytest

from medtransfer import _progress
from medtransfer._progress import Ticker


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
    return now


def test_ticker_writes_at_a_steady_pace(clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="medtransfer.progress")
    ticker = Ticker("features m / d:train", 1200, every=10.0)
    for _ in range(12):  # 100 images a second for 12 s: lines at the first batch and 10 s after it, then the end
        clock[0] += 1.0
        ticker.advance(100)
    ticker.finish("done")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["features m / d:train: 100/1200 images (100.0 images/s)",
                     "features m / d:train: 1100/1200 images (100.0 images/s)",
                     "features m / d:train: 1200/1200 images (100.0 images/s) done"]


def test_silent_unless_enabled(clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="medtransfer.progress")
    ticker = Ticker("x", None)
    ticker.advance(5)
    ticker.finish()
    assert not caplog.records and not ticker.enabled


def test_enable_writes_to_the_stderr_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("medtransfer.progress")
    state = (logger.level, logger.propagate, list(logger.handlers))
    try:
        _progress.enable()
        _progress.enable()  # once only
        _progress.say("cell %d/%d: %s", 1, 3, "model=a")
        err = capsys.readouterr().err
        assert err.count("cell 1/3: model=a") == 1 and err.startswith("[medtransfer ")
    finally:
        logger.level, logger.propagate, logger.handlers[:] = state[0], state[1], state[2]
