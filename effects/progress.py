"""A console progress bar for long work (renders, benchmarks, training).

Runs on whatever thread does the work; writes to stderr only when it is a terminal or when
``force`` is set, at most ten times a second, so logs stay small.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """Usage: ``with Progress(total, "rendering") as bar: bar.update(done, extra="15x")``."""

    def __init__(self, total: float, label: str, unit: str = "", stream=None, force: bool = False,
                 width: int = 28):
        self.total = max(float(total), 1e-12)
        self.label, self.unit, self.width = label, unit, width
        self.stream = stream or sys.stderr
        self.enabled = force or getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0
        self.started = time.perf_counter()

    def update(self, done: float, extra: str = "", final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        unit = f" {self.unit}" if self.unit else ""
        self.stream.write(f"\r{self.label} {frac * 100:5.1f}% [{bar}] {done:.1f}/{self.total:.1f}{unit}"
                          f"{'  ' + extra if extra else ''}\x1b[K")
        if final:
            self.stream.write("\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
        return False
