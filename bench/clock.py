"""Elapsed and remaining time of long work, for the progress lines of ``compare`` and ``tune``."""

from __future__ import annotations

import time

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Eta:
    """Work measured in units (epochs, trials): how long it has run and, at the pace so far,
    how long the rest will take."""

    def __init__(self, total: float) -> None:
        self.total, self.done = total, 0.0
        self.started = time.monotonic()

    def advance(self, units: float = 1.0) -> None:
        self.done += units

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        if not self.done or self.done >= self.total:
            return f"elapsed {duration(elapsed)}"
        return (
            f"elapsed {duration(elapsed)}, "
            f"~{duration(elapsed / self.done * (self.total - self.done))} left"
        )
