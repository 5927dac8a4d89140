"""A console progress bar for long work (renders, benchmarks, training).

Runs on whatever thread does the work. On a terminal the bar redraws in place at most ten times
a second; into a log (not a terminal) it writes a plain line at most every ``log_every_s``.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """Usage: ``with Progress(total, "rendering") as bar: bar.update(done, extra="15x")``."""

    def __init__(self, total: float, label: str, unit: str = "", stream=None, width: int = 28,
                 log_every_s: float = 15.0):
        self.total = max(float(total), 1e-12)
        self.label, self.unit, self.width = label, unit, width
        self.stream = stream or sys.stderr
        self.terminal = getattr(self.stream, "isatty", lambda: False)()
        self.interval = 0.1 if self.terminal else log_every_s
        self._last = 0.0
        self.started = time.perf_counter()

    def update(self, done: float, extra: str = "", final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - (self._last or self.started) < self.interval:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.label} {frac * 100:5.1f}% [{bar}] {done:.1f}/{self.total:.1f}{unit}{'  ' + extra if extra else ''}"
        if self.terminal:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.terminal and self._last:
            self.stream.write("\n")
            self.stream.flush()
        return False
