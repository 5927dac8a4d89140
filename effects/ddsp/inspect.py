"""Inspection API of the DDSP amp: the curves each stage can show at given knobs, as plain arrays.

Everything is computed from ``amp.dsp_design`` (the code that sets the streamed coefficients)
with fresh state, so it never touches the audio thread's state.

Threads: GUI/CLI thread.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from effects.ddsp import amp, biquad, gru1, tonestack


@dataclasses.dataclass
class FilterCurve:
    """One biquad: its design and response over the stage's frequency grid."""
    name: str
    kind: str
    f_hz: float
    gain_db: float
    q: float
    magnitude_db: np.ndarray  # (K,)
    phase_rad: np.ndarray  # (K,) unwrapped


@dataclasses.dataclass
class NonlinearityCurve:
    """A GRU1 (or the phase splitter's tanh) between its pre- and post-gain, in stage-signal units.

    transfer_in/out: a slow sweep from -amplitude to +amplitude (the static curve);
    loop_in/out: the last period of a sine of ``loop_amplitude`` at ``loop_hz`` (the GRU's memory
    shows as a loop instead of a line).
    """
    name: str
    transfer_in: np.ndarray
    transfer_out: np.ndarray
    loop_in: np.ndarray
    loop_out: np.ndarray


@dataclasses.dataclass
class Stage:
    """A stage of the amp: its filters, nonlinearities and gains, and the response of its linear part.

    ``magnitude_db``/``phase_rad`` are the response of the stage's filters and gains with every
    nonlinearity replaced by unit gain (the small-signal path without the GRU1s). ``reference_db``,
    where a stage has one, is what it was fitted to (the tone stack: the JVM's tone-stack circuit,
    shifted by one level for all knob settings, ``_circuit_db``), named by ``reference_name``.
    """
    name: str
    freqs_hz: np.ndarray  # (K,) log-spaced grid
    magnitude_db: np.ndarray  # (K,)
    phase_rad: np.ndarray  # (K,)
    filters: list[FilterCurve]
    nonlinearities: list[NonlinearityCurve]
    gains_db: dict[str, float]
    reference_name: str = ""
    reference_db: np.ndarray | None = None


def _db(h):
    return 20.0 * np.log10(np.maximum(np.abs(h), 1e-12))


def stages(params: dict, knobs_panel: np.ndarray, sample_rate: float, n_freqs: int = 256,
           f_min_hz: float = 20.0, f_max_hz: float = 20000.0, amplitude: float = 1.0,
           loop_amplitude: float = 0.5, loop_hz: float = 100.0, oversampled=()) -> list[Stage]:
    """Curves of every stage at panel knobs (5,) gain, bass, middle, treble, master.

    Args:
        params: the model's parameters by name (as ``stream.load`` returns them).
        knobs_panel: (5,) panel values 0..10.
        sample_rate: the model's rate in Hz.
        n_freqs, f_min_hz, f_max_hz: the log frequency grid (capped below Nyquist).
        amplitude: peak of the transfer-curve sweep at each nonlinearity's input.
        loop_amplitude, loop_hz: the sine for the hysteresis loops.
        oversampled: the GRU1s that run at twice the rate (``stream.load``'s ``meta["oversampled"]``):
            their curves are drawn through the halfbands, and their stages' responses include the
            halfbands' round trip.
    Returns:
        Stages in signal order: preamp WH1..WH4, tone stack, power amp, output transformer.
    """
    design, gains = amp.dsp_design(params, np.asarray(knobs_panel, np.float64), sample_rate)
    sos = amp.design_sos(design, sample_rate)
    freqs_hz = np.geomspace(f_min_hz, min(f_max_hz, 0.499 * sample_rate), n_freqs)
    w = 2.0 * np.pi * freqs_hz / sample_rate
    gru = params["gru"]

    def h_of(i, n=3):
        return biquad.response(sos[i:i + n], w)

    def filters(prefix, first):
        out = []
        for i, kind in enumerate(biquad.GROUP):
            h = biquad.response(sos[first + i:first + i + 1], w)
            f, g, q = design[first + i]
            out.append(FilterCurve(f"{prefix} {biquad.KINDS[kind]}", biquad.KINDS[kind], float(f), float(g),
                                   float(q), _db(h), np.unwrap(np.angle(h))))
        return out

    def gru_curve(name, k, g_pre, g_post):
        if k in oversampled:
            name, up, down = name + " (2x rate)", amp.upsample2_np, amp.downsample2_np
        else:
            up = down = np.asarray
        return _nonlinearity(name, lambda v: g_post * down(_run_gru(up(v * g_pre), gru[k])), amplitude,
                             loop_amplitude, loop_hz, sample_rate)

    # Up- and downsampling around an oversampled GRU1 filter its path by H(w/2)^2 + H(w/2 + pi)^2.
    round_trip = amp.halfband_response(w / 2.0) ** 2 + amp.halfband_response(w / 2.0 + np.pi) ** 2

    def halfbands(k):
        return round_trip if k in oversampled else 1.0

    def stage(name, h, flt, nl, g):
        return Stage(name, freqs_hz, _db(h), np.unwrap(np.angle(h)), flt, nl,
                     {k: float(20 * np.log10(max(v, 1e-12))) for k, v in g.items()})

    out = []
    for k in range(amp.N_WH_PRE):
        s, g_pre, g_post = 6 * k, gains[2 * k], gains[2 * k + 1]
        out.append(stage(f"preamp WH{k + 1}", h_of(s) * h_of(s + 3) * g_pre * g_post * halfbands(k),
                         filters("H1", s) + filters("H2", s + 3),
                         [gru_curve(f"WH{k + 1} GRU1", k, g_pre, g_post)],
                         {"pre": g_pre, "post": g_post}))
    tone = stage("tone stack", h_of(amp.SOS_TS), filters("tone", amp.SOS_TS), [], {})
    tone.reference_name = "circuit (fitted to)"
    tone.reference_db = _circuit_db(params, np.asarray(knobs_panel, np.float64), freqs_hz, sample_rate)
    out.append(tone)
    # Power amp: small-signal a = M G F_nfb x, tanh'(0) = 1, x3 = WH+(a) - WH-(-a) -> both paths add.
    m, g = gains[amp.G_M], gains[amp.G_G]
    gp, gm = gains[amp.G_WH_PLUS:amp.G_WH_PLUS + 2], gains[amp.G_WH_MINUS:amp.G_WH_MINUS + 2]
    h_plus = gp[0] * gp[1] * h_of(amp.SOS_WH_PLUS) * h_of(amp.SOS_WH_PLUS + 3) * halfbands(amp.GRU_WH_PLUS)
    h_minus = gm[0] * gm[1] * h_of(amp.SOS_WH_MINUS) * h_of(amp.SOS_WH_MINUS + 3) * halfbands(amp.GRU_WH_MINUS)
    h_pa = m * g * h_of(amp.SOS_NFB) * (h_plus + h_minus)
    out.append(stage("power amp", h_pa,
                     filters("NFB", amp.SOS_NFB) + filters("WH+ H1", amp.SOS_WH_PLUS)
                     + filters("WH+ H2", amp.SOS_WH_PLUS + 3) + filters("WH- H1", amp.SOS_WH_MINUS)
                     + filters("WH- H2", amp.SOS_WH_MINUS + 3),
                     [_nonlinearity("phase splitter tanh", np.tanh, amplitude, loop_amplitude, loop_hz, sample_rate),
                      gru_curve("WH+ GRU1", amp.GRU_WH_PLUS, *gp), gru_curve("WH- GRU1", amp.GRU_WH_MINUS, *gm)],
                     {"master M": m, "G": g, "WH+ pre": gp[0], "WH+ post": gp[1], "WH- pre": gm[0], "WH- post": gm[1]}))
    g_ot, g_out = gains[amp.G_OT], gains[amp.G_OUT]
    out.append(stage("output transformer", h_of(amp.SOS_OT) * g_ot * g_out * halfbands(amp.GRU_OT), filters("OT", amp.SOS_OT),
                     [gru_curve("OT GRU1", amp.GRU_OT, g_ot, 1.0)], {"in": g_ot, "out": g_out}))
    return out


def _circuit_db(params: dict, knobs_panel: np.ndarray, freqs_hz: np.ndarray, sample_rate: float) -> np.ndarray:
    """The tone-stack circuit's response (dB) at the knobs, in the calibration it was fitted to, shifted by one level for all knob settings:
    where the tone stack meets it at bass, middle and treble 5 (mean over the fit's band), so that a
    level the fit missed at other settings shows."""
    middle = knobs_panel.copy()
    middle[1:4] = 5.0
    sos = amp.design_sos(amp.tone_stack_design(params, amp.normalise(middle), sample_rate), sample_rate)
    stack_db = _db(biquad.response(sos, 2.0 * np.pi * freqs_hz / sample_rate))
    values = {k: np.asarray(v, np.float64) for k, v in amp.circuit_values(params).items()}
    circuit_middle_db = _db(tonestack.circuit_response(freqs_hz, 5.0, 5.0, 5.0, values))
    band = (freqs_hz >= tonestack.FIT_HZ[0]) & (freqs_hz <= tonestack.FIT_HZ[1])
    band = band if band.any() else np.ones_like(band)
    offset = np.mean(stack_db[band] - circuit_middle_db[band])
    return _db(tonestack.circuit_response(freqs_hz, *knobs_panel[1:4], values)) + offset


def _run_gru(v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """GRU1 from zero state over v (T,), float64."""
    y = np.empty((1, v.size))
    gru1._forward(v[None].astype(np.float64), np.asarray(p, np.float64), np.zeros(1), y)
    return y[0]


def _nonlinearity(name, f, amplitude, loop_amplitude, loop_hz, sample_rate) -> NonlinearityCurve:
    # Transfer: settle at -amplitude, then a 0.2 s ramp up to +amplitude (slow against the GRU's memory).
    n_settle, n_ramp = 2048, int(0.2 * sample_rate)
    ramp = np.concatenate([np.full(n_settle, -amplitude), np.linspace(-amplitude, amplitude, n_ramp)])
    transfer_out = f(ramp)[n_settle:]
    # Loop: three periods of a sine, keep the last.
    period = int(round(sample_rate / loop_hz))
    sine = loop_amplitude * np.sin(2 * np.pi * np.arange(3 * period) / period)
    loop_out = f(sine)[-period:]
    return NonlinearityCurve(name, ramp[n_settle:], transfer_out, sine[-period:], loop_out)
