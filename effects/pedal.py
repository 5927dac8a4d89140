"""Pedal base class, knobs, and the chain of pedals.

Threads: ``process`` runs on the audio thread (or a render/bench thread); ``reset`` on the thread
that sets a pedal up (engine, GUI, render, bench: a pedal settles its state there, milliseconds);
``set_knobs`` is called from the GUI or CLI thread and only writes knob targets, which the
audio thread reads at its next control tick and approaches smoothly. Nothing here takes a lock.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from effects import kernels


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not of the kind the pedal needs."""


@dataclasses.dataclass(frozen=True)
class Knob:
    """A control on the pedal's panel, in panel units.

    A switch has ``choices``: its value is the index of the chosen position, and
    ``set_knobs`` accepts the position's name as well.
    """
    name: str
    minimum: float
    maximum: float
    default: float
    unit: str = ""
    choices: tuple[str, ...] = ()

    def validate(self, value) -> float:
        """Return value as a float in panel units, or raise ValueError naming the knob."""
        if self.choices and isinstance(value, str):
            if value not in self.choices:
                raise ValueError(f"knob '{self.name}' takes one of {', '.join(self.choices)}, not '{value}'")
            return float(self.choices.index(value))
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"knob '{self.name}' needs a number, not {value!r}") from None
        if not np.isfinite(v) or v < self.minimum or v > self.maximum:
            raise ValueError(f"knob '{self.name}' = {value} is outside {self.minimum:g}..{self.maximum:g}")
        if self.choices and v != round(v):
            raise ValueError(f"knob '{self.name}' is a switch: give one of {', '.join(self.choices)}")
        return v

    def describe(self, value: float) -> str:
        """Human-readable value with its unit or switch position."""
        if self.choices:
            return self.choices[int(round(value))]
        return f"{value:g}{(' ' + self.unit) if self.unit else ''}"


class Pedal:
    """A stateful effect that processes mono float32 blocks at ``sample_rate``.

    Knob targets are approached by a linear ramp that crosses a knob's whole range in
    ``smoothing_ms``, advanced at control ticks every ``control_period`` samples counted from the
    last reset. Subclasses recompute their coefficients at a tick only when a knob moved, and an
    output gain (``level``-style knobs) is ramped per sample between ticks. Because ticks fall on
    fixed sample positions, the output does not depend on how the stream is cut into blocks.

    A pedal that ``settles`` (one that implements ``_settle``: a trained model whose idle state is not
    zero, and depends on the knobs, so that from zero it would click) finds its state at rest at the
    knob targets when it is reset. Its knobs set after a reset, and its knobs after a recovery from NaN
    input, glide from the knobs the state rests at, as any knob move does; other pedals take their
    targets at once.

    Subclasses define ``name``, ``sample_rate``, ``knobs`` and implement ``_configure``,
    ``_run`` and ``_reset_state``; ``_output_gain`` defaults to unity; ``_settle`` is optional.
    """
    name: str = ""
    description: str = ""
    sample_rate: int = 48000
    latency_samples: int = 0
    knobs: tuple[Knob, ...] = ()
    control_period: int = 32
    smoothing_ms: float = 50.0
    # A pedal whose model plays a DC at rest sets an ``effects.rest.SilentTwin`` of its stream here: the
    # base class subtracts its output, arms it at every knob move and resets it with the stream.
    _silent = None

    def __init__(self):
        self._knob_index = {k.name: i for i, k in enumerate(self.knobs)}
        self._target = np.array([k.default for k in self.knobs], dtype=np.float64)
        self._value = self._target.copy()
        self._rest = self._target.copy()  # the knobs the signal state was settled at
        span = np.array([k.maximum - k.minimum for k in self.knobs], dtype=np.float64)
        ticks_per_sweep = max(1.0, self.smoothing_ms * 1e-3 * self.sample_rate / self.control_period)
        self._max_step = span / ticks_per_sweep
        self._gain_prev = self._gain = 1.0
        self._phase = 0
        self._started = False
        self._warned_nonfinite = False
        self._scratch = np.zeros(0, np.float32)

    # ---- knobs (any thread) ----
    def knob(self, name: str) -> Knob:
        try:
            return self.knobs[self._knob_index[name]]
        except KeyError:
            raise ValueError(f"{self.name} has no knob '{name}' (knobs: {', '.join(self._knob_index)})") from None

    def set_knobs(self, **values) -> None:
        """Set knob targets in panel units; all are checked before any is applied."""
        checked = [(self.knob(n).validate(v), self._knob_index[n]) for n, v in values.items()]
        for v, i in checked:
            self._target[i] = v

    def knob_values(self) -> dict[str, float]:
        """Knob targets in panel units (what the panel shows)."""
        return {k.name: float(self._target[i]) for i, k in enumerate(self.knobs)}

    def current_knob_values(self) -> dict[str, float]:
        """Smoothed knob values the audio is using now."""
        return {k.name: float(self._value[i]) for i, k in enumerate(self.knobs)}

    # ---- audio thread ----
    def process(self, x, out: np.ndarray | None = None) -> np.ndarray:
        """Process one block of mono samples; state carries over to the next call.

        Args:
            x: (T,) samples at ``self.sample_rate``, any T >= 0; converted to float32.
            out: optional (T,) float32 buffer to write into (may be x itself).
        Returns:
            (T,) float32 output.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"{self.name}: process() takes a 1-D mono block, got shape {x.shape}")
        n = x.shape[0]
        if out is None:
            out = np.empty(n, np.float32)
        if kernels.count_nonfinite(x):
            x = np.where(np.isfinite(x), x, np.float32(0.0))
            self._nonfinite("input")
        pos = 0
        period = self.control_period
        while pos < n:
            if self._phase == 0:
                self._tick()
            steady = self._gain_prev == self._gain and kernels.all_equal(self._value, self._target)
            m = n - pos if steady else min(n - pos, period - self._phase)
            seg = out[pos:pos + m]
            self._run(x[pos:pos + m], seg)
            if self._silent is not None:
                self._silent.subtract(seg)
            if steady:
                kernels.ramp_gain(seg, self._gain, self._gain)
            else:
                d = self._gain - self._gain_prev
                kernels.ramp_gain(seg, self._gain_prev + d * self._phase / period,
                                  self._gain_prev + d * (self._phase + m) / period)
            self._phase = (self._phase + m) % period
            pos += m
        if kernels.count_nonfinite(out):
            out[~np.isfinite(out)] = 0.0
            self._nonfinite("output")
        return out

    def reset(self) -> None:
        """Put the signal state at rest at the knob targets (not on the audio thread: settling takes
        milliseconds); the knobs stay."""
        self._rest[:] = self._target
        if self.settles:
            self._apply(self._rest)
            self._settle()
            if self._silent is not None:
                self._silent.settled()
        self._restore()
        self._phase = 0
        self._started = False

    def _tick(self) -> None:
        first = not self._started
        if first:
            self._value[:] = self._rest if self.settles else self._target
            self._started = True
        moved = kernels.ramp_toward(self._value, self._target, self._max_step)
        self._gain_prev = self._gain
        if moved or first:
            self._apply(self._value)
            self._gain = float(self._output_gain(self._value))
            if first:
                self._gain_prev = self._gain

    def _nonfinite(self, where: str) -> None:
        self._restore()
        if self.settles:  # at rest at the knobs it was settled at; the knobs glide back from there
            self._value[:] = self._rest
            self._apply(self._rest)
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(f"{self.name}: NaN or infinite samples in the {where}; replaced with silence "
                          "and the pedal's state reset (warned once)", RuntimeWarning, stacklevel=3)

    def _apply(self, values: np.ndarray) -> None:
        self._configure(values)
        if self._silent is not None:  # new weights: what silence plays may change
            self._silent.arm()

    def _restore(self) -> None:
        self._reset_state()
        if self._silent is not None:
            self._silent.reset()

    # ---- subclass hooks ----
    def _configure(self, values: np.ndarray) -> None:
        """Recompute coefficients for smoothed knob values (panel units, knob order)."""

    def _output_gain(self, values: np.ndarray) -> float:
        return 1.0

    @property
    def settles(self) -> bool:
        return type(self)._settle is not Pedal._settle

    def _settle(self) -> None:
        """Find the state the signal path rests at, on silence, at the coefficients ``_configure`` just
        set, for ``_reset_state`` to return to. Setup thread only."""

    def _run(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Back to the state ``_settle`` found (audio thread: no allocation)."""
        raise NotImplementedError

    # ---- information (GUI/CLI thread) ----
    def info(self) -> dict:
        """Parameter and operation counts, for ``knobnet bench`` and the model card."""
        return {"params": 0, "ops_per_sample": 0}

    def __repr__(self) -> str:
        knobs = " ".join(f"{k.name}={k.describe(v)}" for k, v in zip(self.knobs, self._target))
        return f"<{type(self).__name__} {self.name} {knobs}>"


class Chain:
    """Pedals in series at one chain rate; ``process`` runs them in order.

    A pedal whose own rate differs from the chain's runs behind a ``RateAdapter`` (streaming
    resampling in and out, a fixed latency of about 1.4 ms), so any pedals can be chained.

    Threads: the GUI builds a new Chain (or calls ``move`` between audio blocks) and swaps the
    engine's reference; ``process`` runs on the audio thread.
    """

    def __init__(self, pedals=(), sample_rate: int | None = None):
        self.pedals = list(pedals)
        self.sample_rate = int(sample_rate or (self.pedals[0].sample_rate if self.pedals else 48000))
        self._adapters = {}
        for p in self.pedals:
            self._adapter(p)

    def _adapter(self, pedal):
        if pedal.sample_rate == self.sample_rate:
            return None
        adapter = self._adapters.get(id(pedal))
        if adapter is None:
            from effects.resample import RateAdapter
            adapter = self._adapters[id(pedal)] = RateAdapter(self.sample_rate, pedal.sample_rate)
        return adapter

    def pedal_latency_samples(self, pedal) -> int:
        """A pedal's latency at the chain rate, resampling included."""
        adapter = self._adapter(pedal)
        if adapter is None:
            return pedal.latency_samples
        return adapter.latency_samples + round(pedal.latency_samples * self.sample_rate / pedal.sample_rate)

    @property
    def latency_samples(self) -> int:
        return sum(self.pedal_latency_samples(p) for p in self.pedals)

    def move(self, src: int, dst: int) -> None:
        """Move the pedal at index src so that it ends up at index dst."""
        n = len(self.pedals)
        if not (0 <= src < n and 0 <= dst < n):
            raise IndexError(f"move({src}, {dst}) outside a chain of {n} pedals")
        self.pedals.insert(dst, self.pedals.pop(src))

    def process(self, x, out: np.ndarray | None = None) -> np.ndarray:
        """Process one block at the chain rate (see ``Pedal.process``)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"chain.process() takes a 1-D mono block, got shape {x.shape}")
        if out is None:
            out = np.empty(x.shape, np.float32)
        if not self.pedals:
            out[:] = x
            return out
        src = x
        for p in self.pedals:
            adapter = self._adapter(p)
            if adapter is None:
                p.process(src, out)
            else:
                adapter.process(p, src, out)
            src = out
        return out

    def reset(self) -> None:
        for p in self.pedals:
            p.reset()
        for a in self._adapters.values():
            a.reset()

    def __len__(self):
        return len(self.pedals)

    def __iter__(self):
        return iter(self.pedals)

    def __getitem__(self, i):
        return self.pedals[i]
