"""The DDSP amp's streaming twin: exact IIR biquads (float64 state) and float32 GRU1s in one numba kernel.

``AmpStream.configure`` turns knob values into coefficients with ``amp.dsp_params`` (the code
the torch model trains through) and ``amp_run`` runs the whole signal path sample by sample with
carried state, so any block size gives the same output.

Threads: ``AmpStream.run``/``reset`` on the audio thread (no allocation); ``configure`` at control
ticks on the audio thread while a knob moves (NumPy, small temporaries); ``load``/``save`` on the
GUI/CLI or training thread.
"""
from __future__ import annotations

import pathlib

import numpy as np
from numba import njit

from effects.ddsp import amp
from effects.ddsp.biquad import sos_sample
from effects.ddsp.gru1 import gru1_sample
from effects.kernels import tanh32
from effects.modelfile import load_npz_model, save_npz_model
from effects.pedal import ModelFileError

FORMAT = "knobnet-ddsp-amp-1"


@njit(nogil=True, fastmath=True, cache=True)
def amp_run(x, sos, z, gains, gru, h, dc, dc_pole, out):
    """Run the amp over one block (layout in ``effects.ddsp.amp``).

    Args:
        x: (T,) float32 input; out: (T,) float32 output (may alias x).
        sos: (45, 5) float64 biquads; z: (45, 2) float64 TDF-II state.
        gains: (16,) float32 linear gains; gru: (7, 12) float32 GRU1 parameters;
        h: (7,) float32 GRU1 states.
        dc: (2,) float64 DC-blocker state (last input, last output); dc_pole: its pole R.
    """
    for t in range(x.shape[0]):
        v = x[t]
        for w in range(4):
            v = sos_sample(v, sos, z, 6 * w, 3) * gains[2 * w]
            h[w] = gru1_sample(v, gru, w, h[w])
            v = sos_sample(h[w] * gains[2 * w + 1], sos, z, 6 * w + 3, 3)
        v = sos_sample(v, sos, z, 24, 3)
        a = sos_sample(v * gains[8], sos, z, 27, 3) * gains[9]
        a = tanh32(a)
        p = sos_sample(a, sos, z, 30, 3) * gains[10]
        h[4] = gru1_sample(p, gru, 4, h[4])
        p = sos_sample(h[4] * gains[11], sos, z, 33, 3)
        m = sos_sample(-a, sos, z, 36, 3) * gains[12]
        h[5] = gru1_sample(m, gru, 5, h[5])
        m = sos_sample(h[5] * gains[13], sos, z, 39, 3)
        h[6] = gru1_sample((p - m) * gains[14], gru, 6, h[6])
        v = sos_sample(h[6], sos, z, 42, 3) * gains[15]
        y = v - dc[0] + dc_pole * dc[1]
        dc[0] = v
        dc[1] = y
        out[t] = y


class AmpStream:
    """Streaming DDSP amp for one set of trained parameters.

    Args:
        params: name -> array, the shapes of ``amp.param_shapes()``.
        sample_rate: in Hz (the rate the model was trained at).
    """

    def __init__(self, params: dict[str, np.ndarray], sample_rate: float):
        self.params = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.sample_rate = float(sample_rate)
        # Biquads keep float64 coefficients and state: in float32 the shelves near 20 Hz drift by
        # ~1e-4 from the exact response (samples in and out stay float32).
        self.sos = np.zeros((amp.N_BIQUADS, 5), np.float64)
        self.gains = np.zeros(amp.N_GAINS, np.float32)
        self.gru = np.ascontiguousarray(self.params["gru"], np.float32)
        self.z = np.zeros((amp.N_BIQUADS, 2), np.float64)
        self.h = np.zeros(amp.N_GRUS, np.float32)
        self.dc = np.zeros(2, np.float64)
        self.dc_pole = amp.dc_block_pole(self.sample_rate)
        self.configure(np.array([5.0, 5.0, 5.0, 5.0, 5.0]))

    def configure(self, knobs_panel: np.ndarray) -> None:
        """Set coefficients for panel knobs (5,) gain, bass, middle, treble, master."""
        sos, gains = amp.dsp_params(self.params, np.asarray(knobs_panel, np.float64), self.sample_rate)
        self.sos[:] = sos
        self.gains[:] = gains

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        amp_run(x, self.sos, self.z, self.gains, self.gru, self.h, self.dc, self.dc_pole, out)

    def reset(self) -> None:
        self.z[:] = 0.0
        self.h[:] = 0.0
        self.dc[:] = 0.0

    # ---- files (GUI/CLI or training thread) ----
    def save(self, path, meta: dict | None = None) -> None:
        """Write the parameters as an .npz weights file (float32) with format tag and metadata."""
        save(path, self.params, self.sample_rate, meta)

    @classmethod
    def load(cls, path) -> "AmpStream":
        params, sample_rate, _ = load(path)
        return cls(params, sample_rate)


def save(path, params: dict, sample_rate: float, meta: dict | None = None) -> None:
    """Write a DDSP amp weights file: float32 arrays plus ``format`` and JSON ``meta``."""
    save_npz_model(path, FORMAT, params, dict(meta or {}, sample_rate=float(sample_rate)))


def load(path) -> tuple[dict[str, np.ndarray], float, dict]:
    """Read a DDSP amp weights file; ModelFileError (one line) for anything else.

    Returns:
        params by name, sample rate in Hz, metadata dict.
    """
    name = pathlib.Path(path).name
    data, meta = load_npz_model(path, FORMAT, "DDSP amp")
    try:
        sample_rate = float(meta["sample_rate"])
    except (KeyError, ValueError, TypeError):
        raise ModelFileError(f"{name}: metadata is missing or unreadable") from None
    params = {}
    for k, shape in amp.param_shapes().items():
        if k not in data:
            raise ModelFileError(f"{name}: missing parameter {k}")
        if data[k].shape != shape:
            raise ModelFileError(f"{name}: {k} has shape {data[k].shape}, the DDSP amp needs {shape}")
        params[k] = data[k]
    return params, sample_rate, meta
