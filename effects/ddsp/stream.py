"""The DDSP amp's streaming twin: exact IIR biquads (float64 state) and float32 GRU1s in one numba kernel.

``AmpStream`` designs its coefficients with ``amp.dsp_params`` (the code the torch model trains
through); ``configure`` redoes the knob-dependent part with the same functions. ``amp_run`` runs
the whole signal path as a pipeline of stages skewed by one sample each (see its docstring), with
carried state, so any block size gives the same output.

Threads: ``AmpStream.run``/``reset``/``clear`` on the audio thread (no allocation); ``configure`` at
control ticks on the audio thread while a knob moves (the tone stack's three biquads and two gains, in
NumPy with small temporaries); ``settle`` (about 2 ms), ``load``/``save`` on the GUI/CLI, engine or
training thread.
"""
from __future__ import annotations

import pathlib

import numpy as np
from numba import njit

from effects.ddsp import amp
from effects.ddsp.biquad import sos_sample
from effects.ddsp.gru1 import gru1_lanes, gru1_step
from effects.kernels import tanh32
from effects.modelfile import load_npz_model, save_npz_model
from effects.pedal import ModelFileError
from effects.rest import IdleState

FORMAT = "knobnet-ddsp-amp-2"
RETIRED_FORMATS = {"knobnet-ddsp-amp-1": "its DDSP amp learned its own tone stack; this one is the circuit's"}
CHUNK = 128  # samples per pipeline pass in amp_run (scratch size)


# The seven GRU1s step together as 8 float32 lanes (one AVX register). Lane k is GRU1 k (amp layout),
# reading scratch row GRU_ROW[k] GRU_LAG[k] samples behind the pipeline's head. Lane 7 idles: its
# parameters are zero, so its state stays 0 whatever it reads.
N_LANES = 8
GRU_ROW = np.array([0, 1, 2, 3, 4, 6, 5, 0], np.int64)
GRU_LAG = np.array([1, 2, 3, 4, 5, 5, 6, 0], np.int64)


def gru_lanes(gru: np.ndarray) -> np.ndarray:
    """(12, N_LANES) float32: GRU1 k's 12 parameters in column k (lane 7 all zero: its state stays 0)."""
    lanes = np.zeros((12, N_LANES), np.float32)
    lanes[:, :gru.shape[0]] = np.asarray(gru, np.float32).T
    return lanes


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def amp_run(x, sos, z, gains, p, h, dc, dc_pole, buf, u, os_lanes, hb, y, u2, out):
    """Run the amp over one block (layout in ``effects.ddsp.amp``).

    The path is cut into 7 stages, each starting at a GRU1 (whose recurrence is the slow part).
    Iteration i runs stage k on sample i - k, reading what stage k - 1 wrote for that sample in
    iteration i - 1: the stages of one iteration are independent, so the seven GRU1 steps run as
    one vector operation (lanes) and the CPU overlaps the stages' filters. Every stage still sees
    its samples in order with its own state, so the output is that of the plain sample-by-sample
    chain, for any block size; the pipeline fills and drains within each chunk of ``CHUNK`` samples.

    An oversampled GRU1 (lane in ``os_lanes``) steps twice per sample: the polyphase halfband
    upsampler gives its even input A0(u) to the vector step and its odd input A1(u) to a second,
    scalar step, and the downsampler gives the stage's output
    (A0(even output) + A1(odd output) one sample later) / 2. ``y[k]`` is what each stage reads.

    Args:
        x: (T,) float32 input; out: (T,) float32 output (may alias x).
        sos: (45, 5) float64 biquads; z: (45, 2) float64 TDF-II state.
        gains: (16,) float32 linear gains; p: (12, N_LANES) float32 GRU1 parameters (``gru_lanes``);
        h: (N_LANES,) float32 GRU1 states.
        dc: (2,) float64 DC-blocker state (last input, last output); dc_pole: its pole R.
        buf: (7, CHUNK) float32 scratch (stage outputs); u: (N_LANES,) float32 scratch.
        os_lanes: (m,) int64 oversampled lanes; hb: (m, 7) float64 halfband state: the upsampler's last
            input and its A0 and A1 last outputs, then the downsampler's A0 last input and output and A1
            last input and output (that last output is the one-sample-late odd branch);
        y, u2: (N_LANES,) float32 scratch.
    """
    d0, d1 = dc[0], dc[1]
    g = gains
    a0, a1 = amp.HALFBAND  # compile-time constants
    for start in range(0, x.shape[0], CHUNK):
        n = min(CHUNK, x.shape[0] - start)
        for i in range(n + 6):
            for k in range(N_LANES):  # each GRU1's input (a clamped index where its stage idles)
                u[k] = buf[GRU_ROW[k], min(max(i - GRU_LAG[k], 0), n - 1)]
            for m in range(os_lanes.shape[0]):  # upsampler: even input now, odd input for the second step
                k = os_lanes[m]
                v = np.float64(u[k])
                even = a0 * (v - hb[m, 1]) + hb[m, 0]
                odd = a1 * (v - hb[m, 2]) + hb[m, 0]
                u[k], u2[k] = even, odd
                if 0 <= i - GRU_LAG[k] < n:
                    hb[m, 0], hb[m, 1], hb[m, 2] = v, even, odd
            gru1_lanes(u, p, h)  # the seven GRU1 steps as one vector operation, into u
            for k in range(N_LANES):  # stages filling or draining the pipeline keep their state
                if 0 <= i - GRU_LAG[k] < n:
                    h[k] = u[k]
                y[k] = u[k]
            for m in range(os_lanes.shape[0]):  # second step (scalar: faster than another vector step), downsampler
                k = os_lanes[m]
                u2[k] = gru1_step(p, k, u2[k], h[k])
                even, odd = np.float64(u[k]), np.float64(u2[k])
                d_even = a0 * (even - hb[m, 4]) + hb[m, 3]
                d_odd = a1 * (odd - hb[m, 6]) + hb[m, 5]
                y[k] = 0.5 * (d_even + hb[m, 6])
                if 0 <= i - GRU_LAG[k] < n:
                    h[k] = u2[k]
                    hb[m, 3], hb[m, 4], hb[m, 5], hb[m, 6] = even, d_even, odd, d_odd
            j = i - 6  # output transformer (after its GRU1), DC blocker
            if j >= 0:
                v = sos_sample(y[6], sos, z, 42, 3) * g[15]
                d1 = v - d0 + dc_pole * d1
                d0 = v
                out[start + j] = d1
            j = i - 5  # the push-pull GRU1s' H2s, their difference, the transformer's gain
            if 0 <= j < n:
                buf[5, j] = (sos_sample(y[4] * g[11], sos, z, 33, 3) - sos_sample(y[5] * g[13], sos, z, 39, 3)) * g[14]
            j = i - 4  # WH4's H2, tone stack, M, F_nfb, G, phase splitter, the WH+/WH- H1s
            if 0 <= j < n:
                v = sos_sample(sos_sample(y[3] * g[7], sos, z, 21, 3), sos, z, 24, 3)
                a = tanh32(sos_sample(v * g[8], sos, z, 27, 3) * g[9])
                buf[4, j] = sos_sample(a, sos, z, 30, 3) * g[10]
                buf[6, j] = sos_sample(-a, sos, z, 36, 3) * g[12]
            j = i - 3  # WH3's H2, WH4's H1 and pre-gain
            if 0 <= j < n:
                buf[3, j] = sos_sample(sos_sample(y[2] * g[5], sos, z, 15, 3), sos, z, 18, 3) * g[6]
            j = i - 2  # WH2's H2, WH3's H1 and pre-gain
            if 0 <= j < n:
                buf[2, j] = sos_sample(sos_sample(y[1] * g[3], sos, z, 9, 3), sos, z, 12, 3) * g[4]
            j = i - 1  # WH1's H2, WH2's H1 and pre-gain
            if 0 <= j < n:
                buf[1, j] = sos_sample(sos_sample(y[0] * g[1], sos, z, 3, 3), sos, z, 6, 3) * g[2]
            if i < n:  # WH1's H1 and pre-gain
                buf[0, i] = sos_sample(x[start + i], sos, z, 0, 3) * g[0]
    dc[0], dc[1] = d0, d1


class AmpStream(IdleState):
    """Streaming DDSP amp for one set of trained parameters. ``settle`` (``IdleState``) once its knobs
    are set: the amp's GRU1 biases hold DC along the path, and from zero it would play a thump.

    Args:
        params: name -> array, the shapes of ``amp.param_shapes()``.
        sample_rate: in Hz (the rate the model was trained at).
        oversampled: the GRU1s that run at twice the rate (``amp.check_oversampled``).
    """

    state_names = ("z", "h", "dc", "hb")
    # 0.37 s at 44.1 kHz: the slowest poles are the 10 Hz DC blocker's and the low shelves' (the shipped
    # weights come within 3e-8 of rest at any knobs tried; 8,192 samples leave up to 1e-5).
    settle_samples = 16384

    def __init__(self, params: dict[str, np.ndarray], sample_rate: float, oversampled=()):
        self.params = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.oversampled = amp.check_oversampled(oversampled)
        self.ops_per_sample = amp.ops_per_sample(self.oversampled)
        self.os_lanes = np.array(self.oversampled, np.int64)  # lane k is GRU1 k
        self.hb = np.zeros((len(self.oversampled), 7), np.float64)
        self.y = np.zeros(N_LANES, np.float32)
        self.u2 = np.zeros(N_LANES, np.float32)
        self.sample_rate = float(sample_rate)
        # Biquads keep float64 coefficients and state: in float32 the shelves near 20 Hz drift by
        # ~1e-4 from the exact response (samples in and out stay float32).
        self.sos = np.zeros((amp.N_BIQUADS, 5), np.float64)
        self.gains = np.zeros(amp.N_GAINS, np.float32)
        self.gru = gru_lanes(self.params["gru"])
        self.z = np.zeros((amp.N_BIQUADS, 2), np.float64)
        self.h = np.zeros(N_LANES, np.float32)
        self.dc = np.zeros(2, np.float64)
        self.dc_pole = amp.dc_block_pole(self.sample_rate)
        self.buf = np.zeros((7, CHUNK), np.float32)
        self.u = np.zeros(N_LANES, np.float32)
        self._keep_idle()
        # Everything but the tone stack and the two knob gains is fixed (amp.tone_stack_design): the
        # whole design once, at the recorded gain and master, where the knob gains are 1.
        neutral = np.array([amp.RECORDED["gain"], 5.0, 5.0, 5.0, amp.RECORDED["master"]])
        sos, self.held_gains = amp.dsp_params(self.params, neutral, self.sample_rate)
        self.sos[:] = sos
        self.configure(neutral)

    def configure(self, knobs_panel: np.ndarray) -> None:
        """Set coefficients for panel knobs (5,) gain, bass, middle, treble, master: the tone stack's
        three biquads and the gain and master factors, as ``amp.dsp_params`` computes them."""
        knobs_panel = np.asarray(knobs_panel, np.float64)
        design = amp.tone_stack_design(self.params, amp.normalise(knobs_panel), self.sample_rate)
        self.sos[amp.SOS_TS:amp.SOS_TS + 3] = amp.design_sos(design, self.sample_rate)
        drive, master = amp.knob_gains(knobs_panel)
        self.gains[:] = self.held_gains
        self.gains[amp.G_DRIVE] *= drive
        self.gains[amp.G_M] *= master

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        amp_run(x, self.sos, self.z, self.gains, self.gru, self.h, self.dc, self.dc_pole, self.buf, self.u,
                self.os_lanes, self.hb, self.y, self.u2, out)

    @property
    def weights(self) -> "AmpStream":
        """What ``AmpTwin.weights_into`` configures (the stream holds its coefficients itself)."""
        return self

    # ---- files (GUI/CLI or training thread) ----
    def save(self, path, meta: dict | None = None) -> None:
        """Write the parameters as an .npz weights file (float32) with format tag and metadata."""
        save(path, self.params, self.sample_rate, meta, self.oversampled)

    @classmethod
    def load(cls, path) -> "AmpStream":
        params, sample_rate, meta = load(path)
        return cls(params, sample_rate, meta["oversampled"])


class AmpTwin:
    """The streaming side of ``knobnet train``'s model type ``ddsp`` (see ``effects.training.train``).

    ``stream()`` gives an ``AmpStream``; ``weights_into(cond, stream)`` sets its knobs from the
    dataset's normalised knobs (gain, bass, middle, treble[, master] over 0..10).
    """

    def __init__(self, params: dict[str, np.ndarray], sample_rate: float, num_conds: int = 5, oversampled=()):
        self.params, self.sample_rate, self.num_conds = params, float(sample_rate), num_conds
        self.oversampled = amp.check_oversampled(oversampled)
        self.ops_per_sample = amp.ops_per_sample(self.oversampled)

    def stream(self) -> AmpStream:
        return AmpStream(self.params, self.sample_rate, self.oversampled)

    def weights_into(self, cond: np.ndarray, s: AmpStream) -> None:
        s.configure(amp.cond_to_panel(np.asarray(cond, np.float64)))


def save(path, params: dict, sample_rate: float, meta: dict | None = None, oversampled=()) -> None:
    """Write a DDSP amp weights file: float32 arrays plus ``format`` and JSON ``meta`` (with the sample
    rate and the oversampled GRU1s)."""
    save_npz_model(path, FORMAT, params, dict(meta or {}, sample_rate=float(sample_rate),
                                              oversampled=list(amp.check_oversampled(oversampled))))


def load(path) -> tuple[dict[str, np.ndarray], float, dict]:
    """Read a DDSP amp weights file; ModelFileError (one line) for anything else.

    Returns:
        params by name, sample rate in Hz, metadata dict (``oversampled``: the GRU1s that run at twice
        the rate, none in files written before the option).
    """
    name = pathlib.Path(path).name
    data, meta = load_npz_model(path, FORMAT, "DDSP amp", RETIRED_FORMATS)
    try:
        sample_rate = float(meta["sample_rate"])
    except (KeyError, ValueError, TypeError):
        raise ModelFileError(f"{name}: metadata is missing or unreadable") from None
    try:
        meta["oversampled"] = amp.check_oversampled(meta.get("oversampled", ()))
    except ValueError as exc:
        raise ModelFileError(f"{name}: {exc}") from None
    params = {}
    for k, v in amp.nominal_calibration().items():  # files written before the calibration
        data.setdefault(k, v.astype(np.float32))
    for k, shape in amp.param_shapes().items():
        if k not in data:
            raise ModelFileError(f"{name}: missing parameter {k}")
        if data[k].shape != shape:
            raise ModelFileError(f"{name}: {k} has shape {data[k].shape}, the DDSP amp needs {shape}")
        params[k] = data[k]
    return params, sample_rate, meta
