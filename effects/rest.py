"""A streaming model's idle state: the state it settles to on silence.

A trained recurrent model does not rest at the zero state: its biases hold the hidden state (and,
through it, DC) off zero. Started from zero it plays what the modelled gear, long switched on,
never plays: a click (the OD-3, up to 0.13 peak) or a thump (the JVM amp, up to 0.8 peak).
``IdleState`` gives a stream ``settle`` (a fixed stretch of silence from zero; the state reached is kept),
``reset`` (back there) and ``clear`` (the zero state, where torch models and the specs' reference
vectors start).

At rest such a model still plays a constant, and the constant moves with the knobs: the OD-3's
-0.009 to +0.003, the LA-2A's 0.0006. The gear it models is AC-coupled and plays nothing. A JVM amp
after the pedal amplifies any step of that DC into a thump: 0.15 peak when the board starts, 0.26
when the OD-3's tone is turned in silence. ``SilentTwin`` is the pedal's model hearing only silence:
the pedal subtracts its output, so in silence it plays zero (within 1e-5, -100 dBFS: after the twin
stops, a GRU may still creep toward rest by 1e-7 a sample), whatever its knobs do.

Threads: ``settle`` (a few milliseconds) where a pedal is set up: engine, GUI, render or training
thread; ``reset`` and ``clear`` anywhere, the audio thread included (copies, no allocation);
``SilentTwin.arm`` and ``subtract`` on the audio thread (no allocation).
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

    def adopt_idle(self, other: "IdleState") -> None:
        """Take the idle state ``other`` (a stream of the same model and weights) settled to."""
        for mine, theirs in zip(self._idle, other._idle):
            mine[...] = theirs

    def reset(self) -> None:
        """Back to the idle state."""
        for name, idle in zip(self.state_names, self._idle):
            getattr(self, name)[...] = idle

    def clear(self) -> None:
        """The zero state."""
        for name in self.state_names:
            getattr(self, name)[...] = 0.0


class SilentTwin:
    """A second stream of a pedal's model that hears only silence, for the pedal to subtract.

    The pedal keeps the twin in step with its own stream: the same weights (shared arrays, or the same
    calls that set them) and the same resets. The twin's output is then what the stream would play on
    silence now, knob moves and resets included, and the difference is zero in silence (module doc).
    The twin runs only while its output can still change: ``arm`` (at every reset and knob move)
    starts ``horizon`` samples of it, after which its output is the constant it reached.

    The ``Pedal`` base class drives it (``arm``, ``reset``, ``settled``, ``subtract``); the pedal makes it and
    keeps the weights shared.

    Args:
        stream: the pedal's stream; twin: another stream of the same model with ``run(x, out)``;
        horizon: samples after which the twin is constant on silence.
    """

    def __init__(self, stream, twin, horizon: int):
        self.stream = stream
        self.twin = twin
        self.horizon = int(horizon)
        self.level = np.float32(0.0)  # the twin's output once it is constant
        self._left = 0
        self._silence = np.zeros(BLOCK, np.float32)
        self._out = np.zeros(BLOCK, np.float32)

    def arm(self) -> None:
        """The weights changed: run the twin for ``horizon`` samples."""
        self._left = self.horizon

    def settled(self) -> None:
        """The stream settled (``IdleState.settle``): the twin rests where it does."""
        self.twin.adopt_idle(self.stream)

    def reset(self) -> None:
        """The pedal reset its stream: the twin resets too, and runs for ``horizon`` samples."""
        self.twin.reset()
        self.arm()

    def subtract(self, out: np.ndarray) -> None:
        """Subtract from ``out`` (the stream's output for the same samples) what silence plays. The twin runs
        for the samples left of its horizon (so where it stops does not depend on the block size); the
        samples after them take its last output."""
        running = max(0, min(self._left, out.shape[0]))
        for start in range(0, running, BLOCK):
            m = min(BLOCK, running - start)
            self.twin.run(self._silence[:m], self._out[:m])
            out[start:start + m] -= self._out[:m]
            self.level = self._out[m - 1]
        self._left -= running
        out[running:] -= self.level
