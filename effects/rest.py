"""A streaming model's idle state: the state it settles to on silence.

A trained recurrent model does not rest at the zero state: its biases hold the hidden state (and,
through it, DC) off zero. Started from zero it plays what the modelled gear, long switched on,
never plays: a click (the OD-3, up to 0.13 peak) or a thump (the JVM amp, up to 0.8 peak).
``IdleState`` gives a stream ``settle`` (a fixed stretch of silence from zero; the state reached is kept),
``reset`` (back there) and ``clear`` (the zero state, where torch models and the specs' reference
vectors start).

Threads: ``settle`` (a few milliseconds) where a pedal is set up: engine, GUI, render or training
thread; ``reset`` and ``clear`` anywhere, the audio thread included (copies, no allocation).
"""
from __future__ import annotations

import numpy as np

BLOCK = 128  # samples per call of ``run`` while settling


class IdleState:
    """Mixin for a stream with ``run(x, out)`` whose signal state is the arrays named in ``state_names``.

    The stream calls ``_keep_idle()`` once its state arrays exist; until ``settle`` runs, the idle
    state is the zero state.
    """
    state_names: tuple[str, ...] = ()
    settle_samples: int = 8192

    def _keep_idle(self) -> None:
        self._idle = [getattr(self, name).copy() for name in self.state_names]
        self._silence = np.zeros(BLOCK, np.float32)
        self._discard = np.zeros(BLOCK, np.float32)

    def settle(self) -> None:
        """Find the idle state at the current weights and go there: ``settle_samples`` of silence from
        zero, the state reached kept for ``reset``."""
        self.clear()
        for _ in range(-(-self.settle_samples // BLOCK)):
            self.run(self._silence, self._discard)
        for name, idle in zip(self.state_names, self._idle):
            idle[...] = getattr(self, name)

    def reset(self) -> None:
        """Back to the idle state."""
        for name, idle in zip(self.state_names, self._idle):
            getattr(self, name)[...] = idle

    def clear(self) -> None:
        """The zero state."""
        for name in self.state_names:
            getattr(self, name)[...] = 0.0
