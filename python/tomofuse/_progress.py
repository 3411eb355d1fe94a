"""Progress reporting through a callback (the CLI turns it into a progress bar)."""

from __future__ import annotations

import logging
from typing import Callable, Optional

__all__ = ["ProgressCallback", "Progress"]

#: ``callback(fraction, message)``: ``fraction`` in [0, 1] of the whole call.
ProgressCallback = Callable[[float, str], None]


class Progress:
    """Maps the steps of a computation onto a ``[0, 1]`` progress callback.

    Parameters
    ----------
    callback : callable or None
        ``callback(fraction, message)``; ``None`` reports to ``logger`` at DEBUG.
    logger : logging.Logger
        Where step messages go.
    """

    def __init__(self, callback: Optional[ProgressCallback], logger: logging.Logger):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        self._callback = callback
        self._logger = logger
        self._start = 0.0
        self._span = 1.0

    def stage(self, start: float, stop: float, message: str) -> None:
        """Enter a stage covering ``[start, stop]`` of the whole call."""
        self._start, self._span = start, stop - start
        self._logger.debug("%s", message)
        self.update(0.0, message)

    def update(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` in [0, 1] of the current stage."""
        if self._callback is not None:
            f = self._start + self._span * min(max(fraction, 0.0), 1.0)
            self._callback(f, message)
