"""Teletronix LA-2A leveling amplifier: a FiLM-conditioned causal micro-TCN.

Runs on the audio thread (``_run``; ``_configure`` at control ticks); loading and
``static_curve`` run on the GUI/CLI thread (``static_curve`` on private buffers, never touching
the audio state); ``gain_reduction_db`` may be read from any thread.

Default weights: knobnet's own student (``resources/la2a/la2a.npz``, a 16-channel micro-TCN trained
by ``knobnet train resources/training/la2a-student.yaml`` on the outputs of the SignalTrain TCN-300-C,
see its model card); ``model_path`` may name that teacher's TorchScript file or any knobnet-tcn file.
The teacher ([mtcn] TCN-300-C, spec section 6) sees p = (limit, peak_reduction / 100); a knobnet
file sees its dataset's knobs normalised to [-1, 1] over the ranges in its metadata. The mode
switch ramps like any knob: between compress and limit the FiLM parameters are interpolated, so
at either position the model is exactly the trained one. While knobs move, the folded FiLM
parameters also ramp per sample between control ticks, so there are no steps. Gain is not
modelled: it is an output make-up gain of 0.4 dB per step, unity at its default of 50 (-20..+20 dB).

The model plays a small DC at rest that moves with its knobs (0.0006 at the defaults); the LA-2A's
output transformer passes none, so the pedal subtracts what the model plays on silence
(``effects.rest.SilentTwin``: a second stream that hears only silence, run for a receptive field after
each knob move or reset) and rests at zero.

Latency: the teacher was trained with each output one sample behind its newest input (spec
section 6, alignment quirk), so its output at sample t estimates the LA-2A's output at t - 1:
one sample of latency, which ``latency_samples`` declares; the student learnt the teacher's
outputs, lag included.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
from numba import njit

from effects.modelfile import RESOURCES_DIR, shared_path
from effects.pedal import Knob, ModelFileError, Pedal
from effects.rest import SilentTwin
from effects.tcn import MicroTCN

SHIPPED_WEIGHTS = RESOURCES_DIR / "la2a" / "la2a.npz"
SHARED_MODEL = ("models", "la2a-microtcn", "traced_3-uTCN-300__causal__4-10-13__fraction-1.0-bs32.pt")
MAKEUP_DB_PER_STEP = 0.4  # gain knob: (gain - 50) * 0.4 dB
VU_MS = 300.0  # meter reaches 99 % of a step (in power) after this long, as a VU meter
METER_FLOOR = 1e-6  # mean-square floor (-60 dBFS): silence reads 0 dB of gain reduction
METER_DC_HZ = 5.0  # the meter is AC-coupled: the DC the model plays under signal is not level
STATIC_TONE_HZ = 1000.0
STATIC_MEASURE_SAMPLES = 4410  # 100 periods of 1 kHz at 44.1 kHz


def makeup_gain(gain: float) -> float:
    """Linear output gain of the gain knob: 10 ** ((gain - 50) * 0.4 / 20)."""
    return 10.0 ** ((gain - 50.0) * MAKEUP_DB_PER_STEP / 20.0)


@njit(nogil=True, fastmath=True, cache=True)
def _mean_square(x, state, coef, dc_coef):
    """AC-coupled one-pole mean square of x, carried in state (mean square, last x, last h).

    Per sample: h = x - x_prev + dc_coef h_prev (DC blocker), s += (1 - coef) (h^2 - s).
    """
    s, x_prev, h = state[0], state[1], state[2]
    for t in range(x.shape[0]):
        h = x[t] - x_prev + dc_coef * h
        x_prev = x[t]
        s += (1.0 - coef) * (h * h - s)
    state[0], state[1], state[2] = s, x_prev, h


class LA2A(Pedal):
    name = "la2a"
    description = "Teletronix LA-2A leveling amplifier (micro-TCN student of a model of a real LA-2A)"
    sample_rate = 44100
    latency_samples = 1
    knobs = (
        Knob("peak_reduction", 0.0, 100.0, 50.0),
        Knob("gain", 0.0, 100.0, 50.0),
        Knob("mode", 0.0, 1.0, 0.0, choices=("compress", "limit")),
    )

    def __init__(self, model_path=None):
        """model_path: a knobnet-tcn weights file or the SignalTrain TCN-300-C TorchScript file;
        default: knobnet's shipped student, else the shared teacher."""
        if model_path is None:
            model_path = SHIPPED_WEIGHTS if SHIPPED_WEIGHTS.is_file() else shared_path(*SHARED_MODEL)
            if not model_path.is_file():
                raise ModelFileError(f"no LA-2A weights: {SHIPPED_WEIGHTS} is missing; pass model_path=PATH "
                                     "(CLI: --model la2a=PATH)")
        self.model_path = model_path
        self.model = MicroTCN.load(model_path)
        self._stream = self.model.stream()
        self._silent = SilentTwin(self._stream, self.model.stream(), horizon=self.model.receptive_field + self.control_period)
        self._cond_map = self._conditioning_map(self.model.meta, model_path)
        self._p = np.zeros((2, self.model.num_conds), np.float32)  # conditions at compress and at limit
        self._meter = np.zeros((2, 3), np.float64)  # _mean_square states of input and model output
        tau_samples = VU_MS * 1e-3 * self.sample_rate / math.log(100.0)
        self._meter_coef = math.exp(-1.0 / tau_samples)
        self._dc_coef = math.exp(-2.0 * math.pi * METER_DC_HZ / self.sample_rate)
        super().__init__()

    @staticmethod
    def _conditioning_map(meta: dict, path) -> list[tuple[str, float, float]]:
        """Per model condition: (knob, scale, offset) with p = scale * knob value + offset."""
        if "knobs" not in meta:  # the SignalTrain teacher: p = (limit, peak_reduction / 100)
            return [("mode", 1.0, 0.0), ("peak_reduction", 0.01, 0.0)]
        knobs = meta["knobs"]
        if len(knobs) != 2 or set(knobs) != {"peak_reduction", "mode"}:
            raise ModelFileError(f"{pathlib.Path(path).name}: an LA-2A model is conditioned on peak_reduction "
                                 f"and mode, not {', '.join(knobs) or 'nothing'}")
        if meta.get("sample_rate", LA2A.sample_rate) != LA2A.sample_rate:
            raise ModelFileError(f"{pathlib.Path(path).name}: trained at {meta['sample_rate']} Hz, "
                                 f"the LA-2A runs at {LA2A.sample_rate} Hz")
        # the dataset's normalisation: 2 (v - lo) / (hi - lo) - 1
        return [(k, 2.0 / (hi - lo), -2.0 * lo / (hi - lo) - 1.0) for k, (lo, hi) in knobs.items()]

    def conditions(self, peak_reduction: float, out: np.ndarray) -> None:
        """Model conditions at compress (out[0]) and at limit (out[1]) for a peak_reduction."""
        for i, (knob, scale, offset) in enumerate(self._cond_map):
            if knob == "mode":
                out[0, i], out[1, i] = offset, scale + offset
            else:
                out[:, i] = scale * peak_reduction + offset

    # ---- audio thread ----
    def _configure(self, values):
        self.conditions(values[0], self._p)
        for stream in (self._stream, self._silent.twin):
            stream.condition(self._p[0], self._p[1], float(values[2]), ramp_samples=self.control_period)

    def _output_gain(self, values):
        return makeup_gain(values[1])

    def _run(self, x, out):
        _mean_square(x, self._meter[0], self._meter_coef, self._dc_coef)  # before: out may be x
        self._stream.run(x, out)
        _mean_square(out, self._meter[1], self._meter_coef, self._dc_coef)

    def _reset_state(self):
        self._stream.reset()
        self._meter[:] = 0.0

    # ---- metering (any thread) ----
    @property
    def gain_reduction_db(self) -> float:
        """Model output level relative to input level in dB (negative while compressing), with
        VU-like ballistics (~300 ms), AC-coupled (DC is not level); make-up gain is not included."""
        return 10.0 * math.log10((self._meter[1, 0] + METER_FLOOR) / (self._meter[0, 0] + METER_FLOOR))

    def static_curve(self, input_levels_db) -> np.ndarray:
        """Output level against input level of a steady 1 kHz tone, at the knob targets.

        Levels are dB of a sine's peak re full scale (a full-scale sine is 0 dB); the output
        level is that of its mean-removed RMS, sqrt(2) RMS, make-up gain included. Each level
        runs the model from silence for one receptive field, then measures 100 periods.
        Runs on private buffers (a few tenths of a second per level); the audio state is untouched.

        Args:
            input_levels_db: (L,) input levels in dB.
        Returns:
            (L,) output levels in dB.
        """
        levels = np.asarray(input_levels_db, np.float64).reshape(-1)
        values = self._target.copy()
        stream = self.model.stream()
        p = np.zeros_like(self._p)
        self.conditions(values[0], p)
        stream.condition(p[0], p[1], float(values[2]))
        settle = self.model.receptive_field - 1
        t = np.arange(settle + STATIC_MEASURE_SAMPLES)
        tone = np.sin(2 * np.pi * STATIC_TONE_HZ / self.sample_rate * t)
        y = np.empty(t.size, np.float32)
        out_db = np.empty_like(levels)
        for i, level_db in enumerate(levels):
            stream.reset()
            stream.run((10.0 ** (level_db / 20.0) * tone).astype(np.float32), y)
            tail = y[settle:].astype(np.float64)
            rms = np.sqrt(np.mean((tail - tail.mean()) ** 2))
            out_db[i] = 20.0 * np.log10(max(rms * math.sqrt(2.0), 1e-12))
        return out_db + 20.0 * math.log10(makeup_gain(values[1]))

    # ---- information ----
    def info(self) -> dict:
        m = self.model
        kind = ("micro-TCN TCN-300-C (FiLM)" if "knobs" not in m.meta else
                f"micro-TCN {m.channels} ch, kernel {m.kernel_size}, dilations "
                f"{'/'.join(str(d) for d in m.dilations)} (FiLM)")
        return {"params": m.params, "ops_per_sample": m.ops_per_sample, "model": kind,
                "receptive_field": m.receptive_field, "weights": str(self.model_path)}
