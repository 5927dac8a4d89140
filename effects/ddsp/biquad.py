"""RBJ-cookbook biquads: coefficients, frequency responses, and the two ways of filtering.

The coefficient code is written once against an array namespace (``numpy`` or ``torch``) so the
training model, the streaming twin and the inspection curves all use the same numbers
(spec section 7.3). Training filters a whole segment by frequency sampling; streaming runs the
exact transposed-direct-form-II recursion in ``sos_run``.

Threads: ``rbj``/``response`` run on the training thread (torch), on the GUI thread (inspection)
and at control ticks on the audio thread (numpy, a few small temporaries per tick while a knob
moves); ``sos_run`` is a numba kernel for the audio thread (no allocation, no GIL).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

LOW_SHELF, PEAK, HIGH_SHELF = 0, 1, 2
KINDS = ("low shelf", "peak", "high shelf")
#: The filter group F[LS,PK,HS] used by every stage (spec section 7.1).
GROUP = (LOW_SHELF, PEAK, HIGH_SHELF)


def _xp(a):
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    import torch
    return torch


def rbj(kind: int, f_hz, gain_db, q, sample_rate: float):
    """RBJ cookbook biquad coefficients, normalised by a0 (spec section 7.3).

    Args:
        kind: LOW_SHELF, PEAK or HIGH_SHELF.
        f_hz, gain_db, q: (...) arrays (numpy or torch, same type) of centre/corner frequency,
            gain in dB and quality factor.
        sample_rate: in Hz.
    Returns:
        (..., 5) coefficients b0, b1, b2, a1, a2 (a0 = 1), same array type as the inputs.
    """
    xp = _xp(f_hz)
    A = 10.0 ** (gain_db / 40.0)
    w = (2.0 * math.pi / sample_rate) * f_hz
    c = xp.cos(w)
    alpha = xp.sin(w) / (2.0 * q)
    if kind == PEAK:
        b0, b1, b2 = 1.0 + alpha * A, -2.0 * c, 1.0 - alpha * A
        a0, a1, a2 = 1.0 + alpha / A, -2.0 * c, 1.0 - alpha / A
    else:
        s = 2.0 * xp.sqrt(A) * alpha
        sign = 1.0 if kind == LOW_SHELF else -1.0  # HS = LS with c -> -c and b1, a1 negated
        cc = sign * c
        b0 = A * ((A + 1.0) - (A - 1.0) * cc + s)
        b1 = sign * 2.0 * A * ((A - 1.0) - (A + 1.0) * cc)
        b2 = A * ((A + 1.0) - (A - 1.0) * cc - s)
        a0 = (A + 1.0) + (A - 1.0) * cc + s
        a1 = -sign * 2.0 * ((A - 1.0) + (A + 1.0) * cc)
        a2 = (A + 1.0) + (A - 1.0) * cc - s
    return xp.stack([b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0], -1)


def response(sos, w_rad):
    """Complex frequency response of a cascade of biquads.

    Args:
        sos: (..., n, 5) coefficients b0, b1, b2, a1, a2 of n biquads in series.
        w_rad: (K,) normalised angular frequencies in radians per sample (same array type).
    Returns:
        (..., K) complex response, the product over the n biquads.
    """
    xp = _xp(sos)
    z1 = xp.exp(-1j * w_rad)  # e^{-jw}
    z2 = z1 * z1
    b0, b1, b2, a1, a2 = (sos[..., i, None] for i in range(5))
    num, den = b0 + b1 * z1 + b2 * z2, 1.0 + a1 * z1 + a2 * z2  # (..., n, K)
    # One division for the cascade (a fifth of a training step was complex division and prod's backward).
    h_num, h_den = num[..., 0, :], den[..., 0, :]
    for i in range(1, sos.shape[-2]):
        h_num, h_den = h_num * num[..., i, :], h_den * den[..., i, :]
    return h_num / h_den


def fft_filter(x, sos, n_fft: int):
    """Filter by frequency sampling: multiply the spectrum by H(e^{j2pik/N}) (spec section 7.3).

    Equivalent to convolving with h = irfft(H, N), the N-periodised impulse response, so it
    matches the IIR when the response has decayed within N - T samples.

    Args:
        x: (B, T) torch signal, T <= n_fft // 2.
        sos: (B, n, 5) torch coefficients, one cascade per batch row.
        n_fft: FFT size N.
    Returns:
        (B, T) filtered signal.
    """
    import torch
    T = x.shape[-1]
    w = torch.linspace(0.0, math.pi, n_fft // 2 + 1, dtype=x.dtype, device=x.device)
    H = response(sos, w)
    return torch.fft.irfft(torch.fft.rfft(x, n_fft) * H, n_fft)[..., :T]


@njit(inline="always", nogil=True, fastmath=True, cache=True)
def sos_sample(x, sos, state, first, n):
    """Run one sample through biquads first..first+n-1 of ``sos`` (TDF-II), updating ``state``.

    Args:
        x: input sample.
        sos: (N, 5) coefficients b0, b1, b2, a1, a2 (float64 in the amp: see ``stream``).
        state: (N, 2) TDF-II state, same dtype as sos.
        first, n: index of the first biquad and how many to run in series.
    Returns:
        The output sample.
    """
    for i in range(first, first + n):
        y = sos[i, 0] * x + state[i, 0]
        state[i, 0] = sos[i, 1] * x - sos[i, 3] * y + state[i, 1]
        state[i, 1] = sos[i, 2] * x - sos[i, 4] * y
        x = y
    return x


@njit(nogil=True, fastmath=True, cache=True)
def sos_run(x, sos, state, out):
    """Run a block through all biquads of ``sos`` in series (TDF-II), in place on ``out``.

    Args:
        x: (T,) float32 input; sos: (N, 5) and state: (N, 2), float32 or float64; out: (T,) float32.
    """
    n = sos.shape[0]
    for t in range(x.shape[0]):
        out[t] = sos_sample(x[t], sos, state, 0, n)
