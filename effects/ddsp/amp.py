"""The DDSP amp [paper] (spec section 7): knob controllers, DSP parameters, differentiable forward.

Signal path (``STAGES`` lays out every biquad, gain and GRU1 by index):
preamp WH1..WH4 -> tone stack F_TS -> power amp (M, F_nfb, G, phase splitter tanh(+-a),
WH+ and WH-, push-pull difference) -> output transformer (g_ot, GRU1, F_OT, g_out, and [ours]
a fixed 10 Hz DC blocker, since the GRU1 biases would otherwise leave a DC offset), where
WH(x) = H2(g_post * GRU1(g_pre * H1(x))) and every filter group is low shelf, peak, high shelf.

[ours] Optionally (model option ``oversampled``, recorded in the weights file) some GRU1s run at twice
the sample rate, between a polyphase IIR halfband upsampler and downsampler (``HALFBAND``). The
shipped amp so runs those of WH3 and WH4 (``OVERSAMPLED_GRUS``): they are driven hardest (inputs of
3-12 RMS at gain 5), and at the base rate their harmonics above 22 kHz folded back to -22 dB of the
output for a 1 kHz sine. The halfbands delay the path by about 2.5 samples, which the dataset's
alignment leaves to the model (``effects.ddsp.dataset``).

``dsp_params`` maps knobs to all coefficients with array-namespace-agnostic code: the torch model
calls it on its parameters, the streaming twin (``effects.ddsp.stream``) and the inspection API
call it on NumPy copies, so the filters shown and streamed are the filters trained.

Knobs [ours], because the JVM data holds gain 5 only and one (unrecorded) master setting:
- The stage controllers see the knobs normalised to [-1, 1] with gain and master held at the
  recorded setting (0), so nothing untrained is extrapolated from them.
- gain scales the pre-gain of WH2 (after the first triode stage, where the amp's gain pot sits)
  by ``GAIN_DB_PER_STEP`` dB per knob step from 5: more gain drives the later GRU1s harder, so
  it gives more distortion and compression by construction, continuously.
- master scales the power amp's input M by (master / 5)^2 (audio taper; unity at 5).
- The tone stack is the only stage that sees bass, middle and treble. Its controller is fitted to
  the JVM's tone-stack circuit (``effects.ddsp.tonestack``) when the model is built and held there
  while the amp trains: three recorded tone settings cannot teach how the knobs move the response,
  the circuit can. The circuit's calibration (part values, pot tapers and end resistances; 17
  numbers, ``CIRCUIT_SHAPES``) can learn from the recordings instead: with the model option
  ``tone_stack: circuit`` the circuit itself is the tone stack in training, and the biquads are
  then refitted to it (``DDSPAmp``).

Threads: the torch model runs on the training thread; ``dsp_params`` also runs on the GUI
thread (inspection) and at control ticks on the audio thread (NumPy).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from effects.ddsp import biquad, gru1, tonestack

KNOBS = ("gain", "bass", "middle", "treble", "master")
RECORDED = {"gain": 5.0, "master": 5.0}  # settings the controllers are held at (see module doc)
GAIN_DB_PER_STEP = 3.0  # gain knob: +-15 dB at WH2's pre-gain over 0..10
DC_BLOCK_HZ = 10.0  # [ours] the output transformer passes no DC: (1 - z^-1) / (1 - R z^-1) at the output
HIDDEN = 32
N_WH_PRE = 4

# Controllers: name -> (number of outputs, knobs they see).
CONTROLLERS = {
    "pre": (N_WH_PRE * 20, ("gain",)),
    "ts": (9, ("bass", "middle", "treble")),
    "pa": (51, ("master",)),
    "ot": (11, ("master",)),
}

# Indices into the (45, 5) biquad array, the (16,) gain array and the (7, 12) GRU1 array.
N_BIQUADS, N_GAINS, N_GRUS = 45, 16, 7
SOS_TS, SOS_NFB, SOS_WH_PLUS, SOS_WH_MINUS, SOS_OT = 24, 27, 30, 36, 42
G_DRIVE, G_M, G_G, G_WH_PLUS, G_WH_MINUS, G_OT, G_OUT = 2, 8, 9, 10, 12, 14, 15  # G_DRIVE: WH2's pre-gain
GRU_WH_PLUS, GRU_WH_MINUS, GRU_OT = 4, 5, 6
OVERSAMPLED_GRUS = (2, 3)  # the GRU1s the shipped amp runs at twice the rate (WH3's, WH4's; module doc)
# Polyphase allpass halfband H(z) = (A0(z^2) + z^-1 A1(z^2)) / 2, A_i(z) = (a_i + z^-1) / (1 + a_i z^-1):
# coefficients chosen (minimax, Nelder-Mead) for the most attenuation above 0.29 of the doubled rate
# (25.6 kHz at 88.2 kHz): -32.8 dB there, -0.13 dB at 20 kHz, 1.23 samples of the doubled rate of delay at DC.
HALFBAND = (0.26612016, 0.74519966)
# The tone-stack circuit's calibration (``tonestack.nominal_values``): not played, the tone stack's
# controller is fitted to it; it trains only with the model option ``tone_stack: circuit``.
CIRCUIT_PREFIX = "circuit."
CIRCUIT_SHAPES = {"circuit.part_alpha": (len(tonestack.PARTS),), "circuit.taper": (len(tonestack.POTS), 2),
                  "circuit.end_alpha": (len(tonestack.POTS),)}

F_RANGE_HZ = ((20.0, 1000.0), (80.0, 10000.0), (1000.0, 20000.0))  # LS, PK, HS
Q_RANGE = ((0.3, 2.0), (0.1, 10.0), (0.3, 2.0))


def _xp(a):
    return np if isinstance(a, np.ndarray) else __import__("torch")


def _sigmoid(v, xp):
    return 1.0 / (1.0 + xp.exp(-v))


def normalise(knobs_panel, xp=np):
    """Panel knobs (..., 5) in 0..10 -> controller inputs in [-1, 1], gain and master held (module doc)."""
    c = knobs_panel / 5.0 - 1.0
    keep = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    held = np.array([RECORDED["gain"] / 5.0 - 1.0, 0.0, 0.0, 0.0, RECORDED["master"] / 5.0 - 1.0])
    if xp is not np:
        keep, held = xp.as_tensor(keep, dtype=c.dtype), xp.as_tensor(held, dtype=c.dtype)
    return c * keep + held


def controller(params: dict, name: str, c, xp):
    """u in (0, 1): one stage's MLP 5 -> 32 -> 32 -> m (LeakyReLU 0.1, sigmoid) on its knobs.

    Args:
        params: the model's parameters (NumPy arrays or torch tensors) by name.
        c: (..., 5) normalised knobs; the stage sees only its own (others zeroed).
    Returns:
        (..., m) controller outputs.
    """
    mask = np.array([float(k in CONTROLLERS[name][1]) for k in KNOBS])
    v = c * (mask if xp is np else xp.as_tensor(mask, dtype=c.dtype))
    for i in range(3):
        v = v @ params[f"ctrl.{name}.{i}.w"].T + params[f"ctrl.{name}.{i}.b"]
        if i < 2:
            v = xp.maximum(v, 0.1 * v)
    return _sigmoid(v, xp)


def group_design(u, sample_rate: float):
    """Frequencies, gains and Qs of a low shelf, peak and high shelf from u (..., 9) = (f, G, Q) each.

    f = f_lo (f_hi / f_lo)^u capped at 0.45 f_s, G_dB = -24 + 48 u, Q log-mapped (spec 7.2).

    Returns:
        (..., 3, 3): per filter (f_hz, gain_db, q).
    """
    xp = _xp(u)
    f_lo, f_hi = _const([r[0] for r in F_RANGE_HZ], u), _const([r[1] for r in F_RANGE_HZ], u)
    q_lo, q_hi = _const([r[0] for r in Q_RANGE], u), _const([r[1] for r in Q_RANGE], u)
    f_hz = f_lo * (f_hi / f_lo) ** u[..., 0:9:3]  # the three filters at once: (..., 3)
    f_hz = xp.minimum(f_hz, 0.45 * sample_rate) if xp is np else f_hz.clamp(max=0.45 * sample_rate)
    g_db = -24.0 + 48.0 * u[..., 1:9:3]
    q = q_lo * (q_hi / q_lo) ** u[..., 2:9:3]
    return xp.stack([f_hz, g_db, q], -1)


def _const(values, like):
    """Constants as an array of ``like``'s kind (NumPy, or a torch tensor of its dtype and device)."""
    if isinstance(like, np.ndarray) or np.isscalar(like):
        return np.asarray(values, np.float64)
    import torch
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


def design_sos(design, sample_rate: float):
    """(..., n, 3) designs (f_hz, gain_db, q) of groups LS, PK, HS, ... -> (..., n, 5) biquads.

    One coefficient computation per filter kind over every group at once (n is a multiple of 3).
    """
    xp = _xp(design)
    n = design.shape[-2]
    by_kind = [biquad.rbj(biquad.GROUP[k], design[..., k::3, 0], design[..., k::3, 1], design[..., k::3, 2],
                          sample_rate) for k in range(3)]  # (..., n / 3, 5) each
    return xp.stack(by_kind, -2).reshape(tuple(design.shape[:-2]) + (n, 5))


def dc_block_pole(sample_rate: float) -> float:
    """Pole R = exp(-2 pi f_c / f_s) of the output DC blocker (1 - z^-1) / (1 - R z^-1)."""
    return math.exp(-2.0 * math.pi * DC_BLOCK_HZ / sample_rate)


def gain_of(u):
    """Scalar gain 10^((-40 + 80 u) / 20) for u in (0, 1)."""
    return 10.0 ** ((-40.0 + 80.0 * u) / 20.0)


def dsp_params(params: dict, knobs_panel, sample_rate: float):
    """All biquads and gains of the amp for panel knobs (``dsp_design`` turned into coefficients).

    Args:
        params: model parameters by name (NumPy arrays or torch tensors).
        knobs_panel: (..., 5) gain, bass, middle, treble, master in 0..10.
        sample_rate: in Hz.
    Returns:
        sos (..., 45, 5) and gains (..., 16), laid out as the index constants above say.
    """
    design, gains = dsp_design(params, knobs_panel, sample_rate)
    return design_sos(design, sample_rate), gains


def dsp_design(params: dict, knobs_panel, sample_rate: float):
    """Filter designs and gains of the amp for panel knobs.

    Returns:
        design (..., 45, 3) of (f_hz, gain_db, q) per biquad and gains (..., 16), laid out as the
        index constants above say.
    """
    xp = _xp(knobs_panel)
    c = normalise(knobs_panel, xp)
    u_pre, u_pa, u_ot = (controller(params, n, c, xp) for n in ("pre", "pa", "ot"))
    design, gains = [], []
    for w in range(N_WH_PRE):
        u = u_pre[..., 20 * w:20 * w + 20]
        design += [group_design(u[..., 0:9], sample_rate), group_design(u[..., 11:20], sample_rate)]
        gains += [gain_of(u[..., 9]), gain_of(u[..., 10])]
    design.append(tone_stack_design(params, c, sample_rate))
    # Power amp: M, F_nfb, G, then WH+ and WH-.
    design.append(group_design(u_pa[..., 1:10], sample_rate))
    gains += [gain_of(u_pa[..., 0]), gain_of(u_pa[..., 10])]
    for base in (11, 31):
        u = u_pa[..., base:base + 20]
        design += [group_design(u[..., 0:9], sample_rate), group_design(u[..., 11:20], sample_rate)]
        gains += [gain_of(u[..., 9]), gain_of(u[..., 10])]
    # Output transformer.
    design.append(group_design(u_ot[..., 1:10], sample_rate))
    gains += [gain_of(u_ot[..., 0]), gain_of(u_ot[..., 10])]
    drive, master = knob_gains(knobs_panel)
    gains[G_DRIVE] = gains[G_DRIVE] * drive
    gains[G_M] = gains[G_M] * master
    return xp.concatenate(design, -2) if xp is np else xp.cat(design, -2), xp.stack(gains, -1)


def tone_stack_design(params: dict, c, sample_rate: float):
    """The tone stack's (LS, PK, HS) designs (..., 3, 3) for normalised knobs c (..., 5).

    With ``knob_gains`` this is all of the amp that the knobs move (the other controllers see only
    held knobs): the streaming twin recomputes just these at a knob move.
    """
    return group_design(controller(params, "ts", c, _xp(c)), sample_rate)


def knob_gains(knobs_panel):
    """Linear factors of the gain knob (on WH2's pre-gain, ``GAIN_DB_PER_STEP`` dB per step from the
    recorded 5) and of master (on the power amp's input M: (master / 5)^2, audio taper)."""
    drive = 10.0 ** (GAIN_DB_PER_STEP * (knobs_panel[..., 0] - RECORDED["gain"]) / 20.0)
    master = knobs_panel[..., 4] / 5.0
    return drive, master * master


def param_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every trained parameter (the weights file holds exactly these)."""
    shapes = {}
    for name, (m, _) in CONTROLLERS.items():
        for i, (n_in, n_out) in enumerate(((len(KNOBS), HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, m))):
            shapes[f"ctrl.{name}.{i}.w"] = (n_out, n_in)
            shapes[f"ctrl.{name}.{i}.b"] = (n_out,)
    shapes["gru"] = (N_GRUS, gru1.N_PARAMS)
    shapes.update(CIRCUIT_SHAPES)
    return shapes


def circuit_values(params: dict) -> dict:
    """The tone-stack circuit's calibration held in ``params`` (``tonestack.nominal_values``' layout)."""
    return {k: params[CIRCUIT_PREFIX + k] for k in tonestack.nominal_values()}


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Initial parameters: controllers near u = 0.5 (0 dB, mid-range filters), GRU1 ~ tanh.

    Hidden layers use PyTorch's default U(+-1/sqrt(fan_in)); the last layer is scaled by 0.1
    so every stage starts near 0 dB (spec 7.2). Each GRU1 starts near n = tanh(x) with a
    mostly open update gate (w_in = 1, b_iz = b_hz = -1, the rest U(+-0.1)).
    """
    rng = np.random.default_rng(seed)
    p = {}
    for name, shape in param_shapes().items():
        if name.startswith("ctrl."):
            fan_in = shape[-1] if len(shape) == 2 else p[name[:-1] + "w"].shape[1]
            bound = 1.0 / math.sqrt(fan_in) * (0.1 if ".2." in name else 1.0)
            p[name] = rng.uniform(-bound, bound, shape)
    g = rng.uniform(-0.1, 0.1, (N_GRUS, gru1.N_PARAMS))
    g[:, 2] = 1.0
    g[:, 7] = g[:, 10] = -1.0
    p["gru"] = g
    p.update(nominal_calibration())
    return p


def _torch_name(name: str) -> str:
    """Parameter ``name``'s key in ``DDSPAmp.p`` (torch names hold no dots); its state-dict key is "p." + it."""
    return name.replace(".", "_")


def nominal_calibration() -> dict[str, np.ndarray]:
    """The ``circuit.*`` parameters at the circuit's nominal calibration: a new amp's, and what weights saved
    before the calibration existed read as (their biquads were fitted to the nominal circuit)."""
    return {CIRCUIT_PREFIX + k: v for k, v in tonestack.nominal_values().items()}


#: GRU1 parameters that change sign when its state does (``inverted``): w_in, w_hr, w_hz, b_in, b_hn.
GRU1_ODD = (2, 3, 4, 8, 11)


def inverted(params: dict) -> dict:
    """The parameters of the same amp with its output negated, exactly.

    A GRU1 with w_in, b_in, b_hn, w_hr and w_hz negated runs with state -h from the same input
    (r and z see w_hr h and w_hz h unchanged, and n becomes -n); the output transformer's GRU1 is
    followed only by linear stages, so negating its five parameters negates the output. A waveform
    loss rarely crosses from one polarity to the other (it would pass through an output uncorrelated
    with the target), so training picks the polarity that fits before it starts (``train.match_polarity``).
    """
    sign = np.ones((N_GRUS, gru1.N_PARAMS))
    sign[GRU_OT, list(GRU1_ODD)] = -1.0
    out = dict(params)
    out["gru"] = params["gru"] * (sign if isinstance(params["gru"], np.ndarray) else params["gru"].new_tensor(sign))
    return out


def count_params() -> int:
    """Parameters the amp plays with (the circuit's calibration is what the tone stack was fitted to)."""
    return int(sum(np.prod(s) for k, s in param_shapes().items() if not k.startswith(CIRCUIT_PREFIX)))


def ops_per_sample(oversampled=()) -> int:
    """Flops per sample of the streaming twin (spec 7.4): 9 per TDF-II biquad, 109 per GRU1
    (2 sigmoids and a tanh at 30 each, 19 other ops), 30 for the phase splitter's tanh,
    1 per gain multiply, 2 for the inversion and push-pull difference, 3 for the DC blocker; each
    oversampled GRU1 adds its second step (109) and its halfbands (4 allpasses at 3, a sum and a halving: 14)."""
    return N_BIQUADS * 9 + N_GRUS * 109 + 30 + N_GAINS + 2 + 3 + len(oversampled) * (109 + 14)


def cond_to_panel(c, xp=np):
    """Knobs normalised to [-1, 1] over 0..10 (gain, bass, middle, treble[, master]) -> (..., 5) panel.

    The JVM data holds no master: with 4 knobs, master is the recorded 5.
    """
    panel = 5.0 * (c + 1.0)
    if panel.shape[-1] == len(KNOBS) - 1:
        if xp is np:
            return np.concatenate([panel, np.full(panel.shape[:-1] + (1,), RECORDED["master"])], -1)
        return xp.cat([panel, xp.full(panel.shape[:-1] + (1,), RECORDED["master"], dtype=panel.dtype,
                                       device=panel.device)], -1)
    return panel


class DDSPAmp:
    """Differentiable DDSP amp (torch): ``forward(x, c)`` for training, the model type ``ddsp`` of
    ``knobnet train`` (``export`` writes the pedal's weights file, ``streaming_twin`` plays them).

    Built lazily around ``torch.nn.Module`` so that importing this module needs no torch.

    Args:
        params: initial parameters, or None for ``init_params(seed)``.
        sample_rate: in Hz.
        n_fft: smallest FFT of the frequency-sampled filters (grown to 2T for longer inputs).
        num_conds: 4 (gain, bass, middle, treble; master held at 5) or 5 (with master).
        frozen: name prefixes of parameters that do not train (``requires_grad`` off).
        tone_stack: ``fitted``: the tone stack is its biquads (what plays); ``circuit``: in training it is
            the circuit itself (``tonestack.circuit_response`` at the FFT bins, with the calibration
            ``circuit.*`` among the parameters), and ``export``/``streaming_twin`` play biquads fitted to
            the calibrated circuit (``fitted_params``).
        oversampled: indices of the GRU1s that run at twice the rate (module doc), e.g. ``OVERSAMPLED_GRUS``.
    """

    def __new__(cls, params: dict | None = None, sample_rate: float = 44100.0, n_fft: int = 16384,
                num_conds: int = 5, seed: int = 0, frozen: tuple[str, ...] = (), tone_stack: str = "fitted",
                oversampled=()):
        import torch
        if tone_stack not in TONE_STACK_MODES:
            raise ValueError(f"tone_stack must be one of {', '.join(TONE_STACK_MODES)}, not {tone_stack!r}")
        oversampled = check_oversampled(oversampled)
        if num_conds not in (len(KNOBS) - 1, len(KNOBS)):
            raise ValueError(f"the DDSP amp takes the knobs {', '.join(KNOBS)} (master optional), "
                             f"the dataset has {num_conds}")

        def _flat(values):
            """One vector of calibration values (``ts_fitted_to``'s layout: tonestack.nominal_values' order)."""
            return torch.cat([torch.as_tensor(v).reshape(-1) for v in values])

        class _DDSPAmp(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.sample_rate = float(sample_rate)
                self.n_fft = n_fft
                self.num_conds = num_conds
                self.tone_stack = tone_stack
                self.oversampled = oversampled
                init = params if params is not None else init_params(seed)
                self.p = torch.nn.ParameterDict(
                    {_torch_name(k): torch.nn.Parameter(torch.as_tensor(np.asarray(init[k]), dtype=torch.float32),
                                                        requires_grad=not k.startswith(frozen))
                     for k in param_shapes()})
                # The calibration the tone stack's biquads were fitted to (``refit_tone_stack``).
                self.register_buffer("ts_fitted_to", self._calibration().detach().clone())
                self._level_cache = (None, None)

            def _calibration(self):
                return _flat(self.p[_torch_name(CIRCUIT_PREFIX + k)] for k in tonestack.nominal_values())

            def load_state_dict(self, state, strict: bool = True, assign: bool = False):
                """Weights saved before the circuit calibration existed (no ``circuit.*``, no
                ``ts_fitted_to``) load at the nominal calibration, taken as the one their biquads were fitted
                to (they were fitted to the nominal circuit with clamped pot ends, 0.5 dB RMS from today's)."""
                nominal = {"p." + _torch_name(k): torch.as_tensor(v, dtype=torch.float32)
                           for k, v in nominal_calibration().items()}
                if not any(k in state for k in nominal) and "ts_fitted_to" not in state:
                    state = dict(state, **nominal, ts_fitted_to=_flat(nominal.values()))
                return super().load_state_dict(state, strict, assign)

            def _tone_stack_level_db(self) -> float:
                """The level of the tone stack's biquads relative to the calibration they were fitted to
                (``tonestack.tone_stack_level_db``): the level the rest of the amp trained around."""
                params = {k: v for k, v in self.numpy_params().items() if k.startswith(TONE_STACK_PARAMS)}
                fitted_to = self.ts_fitted_to.detach().cpu().double().numpy()
                key = fitted_to.tobytes() + b"".join(v.tobytes() for v in params.values())
                if self._level_cache[0] != key:
                    values, at = {}, 0
                    for k, v in tonestack.nominal_values().items():
                        values[k], at = fitted_to[at:at + v.size].reshape(v.shape), at + v.size
                    self._level_cache = (key, tonestack.tone_stack_level_db(params, self.sample_rate, values))
                return self._level_cache[1]

            def count_params(self) -> int:
                return count_params()

            def after_init_from(self) -> str | None:
                return self.refit_tone_stack()

            def refit_tone_stack(self) -> str | None:
                """Fit the tone stack's biquads to the calibrated circuit if they were fitted to another
                calibration (after ``train.init_from`` a ``circuit`` run); a line for the log, or None."""
                if torch.equal(self._calibration(), self.ts_fitted_to):
                    return None
                fitted, rms_db = self.fitted_params()
                with torch.no_grad():
                    for k, v in self.named().items():
                        if k.startswith(TONE_STACK_PARAMS):
                            v.copy_(torch.as_tensor(fitted[k], dtype=v.dtype))
                    self.ts_fitted_to.copy_(self._calibration())
                return f"tone stack refitted to the calibrated circuit: RMS error {rms_db:.2f} dB over its knob grid"

            def fitted_params(self) -> tuple[dict[str, np.ndarray], float]:
                """NumPy parameters with the tone stack fitted to this model's circuit calibration (kept per
                calibration), and the fit's RMS error in dB (0 when it was fitted already)."""
                params = self.numpy_params()
                if torch.equal(self._calibration(), self.ts_fitted_to):
                    return params, 0.0
                fitted, rms_db = _refit_tone_stack(params, self.sample_rate, self._tone_stack_level_db())
                return dict(params, **fitted), rms_db

            def named(self) -> dict:
                return {k: self.p[_torch_name(k)] for k in param_shapes()}

            def invert_output(self) -> None:
                """Negate the output exactly (``inverted``), in place."""
                import torch
                with torch.no_grad():
                    self.p["gru"].copy_(inverted({"gru": self.p["gru"]})["gru"])

            def numpy_params(self) -> dict[str, np.ndarray]:
                return {k: v.detach().cpu().double().numpy().copy() for k, v in self.named().items()}

            def forward(self, x, c):
                """x (B, T) at sample_rate, c (B, num_conds) knobs in [-1, 1] (``cond_to_panel``) -> (B, T).

                Zero initial state; filters by frequency sampling with an FFT of at least 2T.
                """
                n_fft = max(self.n_fft, 1 << int(math.ceil(math.log2(2 * x.shape[-1]))))
                prm = {k: v.to(x.dtype) for k, v in self.named().items()}
                sos, g = dsp_params(prm, cond_to_panel(c.to(x.dtype), torch), self.sample_rate)
                gru = prm["gru"]
                r = dc_block_pole(self.sample_rate)
                dc_sos = torch.tensor([[[1.0, -1.0, 0.0, -r, 0.0]]], dtype=x.dtype, device=x.device)

                def filt(v, i):
                    return biquad.fft_filter(v, sos[:, i:i + 3], n_fft)

                def nonlinearity(v, k):
                    if k in self.oversampled:
                        return downsample2(gru1.gru1(upsample2(v, n_fft), gru[k]), n_fft)
                    return gru1.gru1(v, gru[k])

                def wh(v, s, gi, k):
                    v = filt(v, s) * g[:, gi, None]
                    return filt(nonlinearity(v, k) * g[:, gi + 1, None], s + 3)

                h = x
                for w in range(N_WH_PRE):
                    h = wh(h, 6 * w, 2 * w, w)
                if self.tone_stack == "circuit":
                    h = self._circuit_filter(h, cond_to_panel(c.to(torch.float64), torch), n_fft)
                else:
                    h = filt(h, SOS_TS)
                a = filt(h * g[:, G_M, None], SOS_NFB) * g[:, G_G, None]
                a_plus = torch.tanh(a)
                h = wh(a_plus, SOS_WH_PLUS, G_WH_PLUS, GRU_WH_PLUS) - wh(-a_plus, SOS_WH_MINUS, G_WH_MINUS, GRU_WH_MINUS)
                h = nonlinearity(h * g[:, G_OT, None], GRU_OT)
                h = filt(h, SOS_OT) * g[:, G_OUT, None]
                return biquad.fft_filter(h, dc_sos.expand(h.shape[0], 1, 5), n_fft)

            def _circuit_filter(self, v, panel, n_fft: int):
                """The calibrated circuit applied by frequency sampling of its analogue response, at the
                level of the biquads it stands in for (``_tone_stack_level_db``)."""
                freqs = torch.linspace(0.0, self.sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64,
                                       device=v.device)
                values = {k: t.double() for k, t in circuit_values(self.named()).items()}
                H = tonestack.circuit_response(freqs, panel[:, 1], panel[:, 2], panel[:, 3], values)
                H = H * 10.0 ** ((self._tone_stack_level_db() - tonestack.nominal_mean_db()) / 20.0)
                return torch.fft.irfft(torch.fft.rfft(v, n_fft) * H.to(torch.complex64 if v.dtype == torch.float32
                                                                         else torch.complex128), n_fft)[..., :v.shape[-1]]

            def export(self, path, meta: dict | None = None) -> None:
                """Write the pedal's weights file (``stream.save``), the tone stack fitted to the calibration."""
                from effects.ddsp import stream
                rate = (meta or {}).get("sample_rate", self.sample_rate)
                if float(rate) != self.sample_rate:
                    raise ValueError(f"the DDSP amp was built for {self.sample_rate:g} Hz, the data is at {rate} Hz")
                stream.save(path, self.fitted_params()[0], self.sample_rate, meta, self.oversampled)

            def streaming_twin(self):
                """The streaming amp (``stream.AmpTwin``) holding these weights (as ``export`` writes them)."""
                from effects.ddsp import stream
                return stream.AmpTwin(self.fitted_params()[0], self.sample_rate, self.num_conds, self.oversampled)

        return _DDSPAmp()


def check_oversampled(oversampled) -> tuple[int, ...]:
    """The GRU1 indices of the model option or file entry ``oversampled`` as a sorted tuple; ValueError
    for anything but distinct GRU1 indices (0..6)."""
    if isinstance(oversampled, (str, bytes)) or not hasattr(oversampled, "__iter__") or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in oversampled):
        raise ValueError(f"oversampled must list GRU1 indices 0..{N_GRUS - 1}, not {oversampled!r}")
    idx = tuple(sorted(int(k) for k in oversampled))
    if len(set(idx)) != len(idx) or any(not 0 <= k < N_GRUS for k in idx):
        raise ValueError(f"oversampled must list distinct GRU1 indices 0..{N_GRUS - 1}, not {list(oversampled)}")
    return idx


def halfband_response(omega):
    """``HALFBAND``'s frequency response at angular frequencies ``omega`` of the doubled rate (NumPy or torch)."""
    xp = _xp(omega)
    z1 = xp.exp(-1j * omega) if xp is np else xp.exp(-1j * omega.to(xp.complex128))
    z2 = z1 * z1
    a0, a1 = HALFBAND
    return 0.5 * ((a0 + z2) / (1.0 + a0 * z2) + z1 * (a1 + z2) / (1.0 + a1 * z2))


def _halfband_bins(n: int, like):
    import torch
    omega = torch.linspace(0.0, math.pi, n // 2 + 1, dtype=torch.float64, device=like.device)
    return halfband_response(omega).to(torch.complex64 if like.dtype == torch.float32 else torch.complex128)


def upsample2(v, n_fft: int):
    """(B, T) -> (B, 2T) torch: zeros between the samples, then 2 ``HALFBAND`` by frequency sampling
    (an FFT of 2 n_fft >= 4T, as the biquads'); the streaming twin runs its polyphase form."""
    import torch
    u = v.new_zeros(v.shape[:-1] + (2 * v.shape[-1],))
    u[..., 0::2] = v
    n = 2 * n_fft
    return torch.fft.irfft(torch.fft.rfft(u, n) * (2.0 * _halfband_bins(n, v)), n)[..., :u.shape[-1]]


def downsample2(v, n_fft: int):
    """(B, 2T) -> (B, T) torch: ``HALFBAND`` by frequency sampling, then every even sample."""
    import torch
    n = 2 * n_fft
    return torch.fft.irfft(torch.fft.rfft(v, n) * _halfband_bins(n, v), n)[..., :v.shape[-1]][..., 0::2]


def _allpass(x: np.ndarray, a: float) -> np.ndarray:
    from scipy.signal import lfilter
    return lfilter([a, 1.0], [1.0, a], x)


def upsample2_np(v: np.ndarray) -> np.ndarray:
    """(T,) -> (2T,) float64, the polyphase halfband upsampler the streaming twin runs, from rest:
    even samples A0(v), odd samples A1(v)."""
    out = np.empty(2 * v.size)
    out[0::2], out[1::2] = _allpass(v, HALFBAND[0]), _allpass(v, HALFBAND[1])
    return out


def downsample2_np(v: np.ndarray) -> np.ndarray:
    """(2T,) -> (T,) float64, the polyphase halfband downsampler: (A0(even) + A1(odd) one sample later) / 2."""
    odd = _allpass(v[1::2], HALFBAND[1])
    return 0.5 * (_allpass(v[0::2], HALFBAND[0]) + np.concatenate([[0.0], odd[:-1]]))


#: ``knobnet train`` model keys of type ``ddsp`` (effects.training.train.MODEL_TYPES).
DDSP_DEFAULTS = {"sample_rate": 44100.0, "n_fft": 16384, "tone_stack": "fitted", "oversampled": []}
TONE_STACK_MODES = ("fitted", "circuit")
TONE_STACK_PARAMS = ("ctrl.ts.",)  # name prefix of the tone stack's parameters (held while training)


_REFITS: dict[bytes, tuple[dict, float]] = {}


def _refit_tone_stack(params: dict, sample_rate: float, level_db: float) -> tuple[dict, float]:
    """The tone stack's parameters fitted to the calibrated circuit in ``params`` at ``level_db``
    (``tonestack.fit_tone_stack``) and the fit's RMS error, from the tone stack in ``params``; the last
    few fits are kept (an export, the report's streaming twin and a next stage's start ask for the same)."""
    key = b"".join(np.asarray(v, np.float64).tobytes() for k, v in sorted(params.items())
                   if k.startswith(TONE_STACK_PARAMS + (CIRCUIT_PREFIX,))) + np.float64([sample_rate, level_db]).tobytes()
    if key not in _REFITS:
        fitted, rms_db = tonestack.fit_tone_stack(params, sample_rate, values=circuit_values(params), level_db=level_db)
        while len(_REFITS) >= 4:
            del _REFITS[next(iter(_REFITS))]
        _REFITS[key] = ({k: v for k, v in fitted.items() if k.startswith(TONE_STACK_PARAMS)}, rms_db)
    fitted, rms_db = _REFITS[key]
    return {k: v.copy() for k, v in fitted.items()}, rms_db


@functools.lru_cache(maxsize=4)
def _circuit_fitted_init(seed: int, sample_rate: float) -> tuple[dict, float]:
    """``init_params(seed)`` with the tone stack fitted to the circuit, and the fit's RMS error in dB
    (deterministic, so kept: each stage of a multi-stage training builds the same start)."""
    from effects.ddsp import tonestack
    return tonestack.fit_tone_stack(init_params(seed), sample_rate)


def circuit_fitted_init(seed: int, sample_rate: float) -> tuple[dict, float]:
    """``_circuit_fitted_init`` with arrays of the caller's own."""
    params, rms_db = _circuit_fitted_init(seed, sample_rate)
    return {k: v.copy() for k, v in params.items()}, rms_db


def build_ddsp(m: dict, num_conds: int):
    """``knobnet train`` builder: a DDSP amp at ``m["sample_rate"]`` with ``init_params`` seeded from
    torch's seed (``train.seed``) and its tone stack fitted to the circuit (module doc; ``build_notes`` says
    how well it fits). With ``m["tone_stack"]`` ``fitted`` the tone stack's biquads are held and the
    circuit's calibration is unused; with ``circuit`` the calibrated circuit is the tone stack in training
    and its calibration trains with the rest (``DDSPAmp``). ``m["oversampled"]`` lists the GRU1s that run at
    twice the rate (module doc; ``[2, 3]`` for WH3 and WH4). The dataset's knobs must be gain, bass, middle,
    treble[, master] over 0..10; ``export`` refuses a dataset rate other than ``sample_rate``."""
    import torch
    if m["tone_stack"] not in TONE_STACK_MODES:
        raise ValueError(f"model.tone_stack must be one of {', '.join(TONE_STACK_MODES)}, not {m['tone_stack']!r}")
    params, rms_db = circuit_fitted_init(torch.initial_seed() % 2 ** 32, m["sample_rate"])
    frozen = TONE_STACK_PARAMS + (() if m["tone_stack"] == "circuit" else (CIRCUIT_PREFIX,))
    model = DDSPAmp(params, m["sample_rate"], m["n_fft"], num_conds, frozen=frozen, tone_stack=m["tone_stack"],
                    oversampled=m["oversampled"])
    model.build_notes = [f"tone stack fitted to the JVM's tone-stack circuit: RMS error {rms_db:.2f} dB "
                         "over its knob grid; held while the amp trains"
                         if m["tone_stack"] == "fitted" else
                         "tone stack: the JVM's tone-stack circuit, its part values, pot tapers and end "
                         "resistances calibrated with the amp (biquads refitted to it for export)"]
    return model
