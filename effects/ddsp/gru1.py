"""The 1-unit GRU used as every DDSP stage's nonlinearity, with compiled forward and backward.

A GRU with one input and one hidden unit whose output is its hidden state (spec section 7.1):
12 parameters ``p = [w_ir, w_iz, w_in, w_hr, w_hz, w_hn, b_ir, b_iz, b_in, b_hr, b_hz, b_hn]``,
r = s(w_ir x + b_ir + w_hr h + b_hr), z = s(w_iz x + b_iz + w_hz h + b_hz),
n = tanh(w_in x + b_in + r (w_hn h + b_hn)), h' = n + z (h - n).

``torch.nn.GRU`` costs ~26 us per step on these CPUs, so training uses ``GRU1Function``: numba
loops over (batch, time) for the forward pass and for backpropagation through time, checked
by ``torch.autograd.gradcheck`` in tests/test_ddsp.py.

Threads: ``gru1`` / ``GRU1Function`` run on the training thread (float32 or float64);
``gru1_lanes`` is inlined into the streaming kernel on the audio thread (float32, rational tanh).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from effects.kernels import sigmoid32, tanh32

N_PARAMS = 12


@njit(inline="always", nogil=True, fastmath=True, cache=True, error_model="numpy")
def gru1_lanes(u, p, h):
    """One float32 step of K GRU1s at once (lane k is GRU1 k), as one vector operation.

    Args:
        u: (K,) inputs, overwritten with the new hidden states; h: (K,) hidden states (read only).
        p: (12, K) parameters, GRU1 k's in column k.
    """
    for k in range(h.shape[0]):  # a run-time trip count: a constant one gets unrolled to scalar code
        # The step written out: calling ``gru1_step`` here keeps LLVM from vectorizing the loop (1.6x slower).
        hk, xk = h[k], u[k]
        r = sigmoid32(p[0, k] * xk + p[6, k] + p[3, k] * hk + p[9, k])
        z = sigmoid32(p[1, k] * xk + p[7, k] + p[4, k] * hk + p[10, k])
        n = tanh32(p[2, k] * xk + p[8, k] + r * (p[5, k] * hk + p[11, k]))
        u[k] = n + z * (hk - n)


@njit(inline="always", nogil=True, fastmath=True, cache=True, error_model="numpy")
def gru1_step(p, k, x, h):
    """One float32 step of GRU1 k (column k of ``p``) from state h with input x: the new state
    (``gru1_lanes``' step, for one lane)."""
    r = sigmoid32(p[0, k] * x + p[6, k] + p[3, k] * h + p[9, k])
    z = sigmoid32(p[1, k] * x + p[7, k] + p[4, k] * h + p[10, k])
    n = tanh32(p[2, k] * x + p[8, k] + r * (p[5, k] * h + p[11, k]))
    return n + z * (h - n)


@njit(inline="always", nogil=True, cache=True)
def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


@njit(nogil=True, cache=True)
def _forward(x, p, h0, y):
    """y[b, t] = h after step t, from h0[b]. x, y: (B, T); p: (12,)."""
    for b in range(x.shape[0]):
        h = h0[b]
        for t in range(x.shape[1]):
            xt = x[b, t]
            r = _sig(p[0] * xt + p[6] + p[3] * h + p[9])
            z = _sig(p[1] * xt + p[7] + p[4] * h + p[10])
            n = math.tanh(p[2] * xt + p[8] + r * (p[5] * h + p[11]))
            h = n + z * (h - n)
            y[b, t] = h


@njit(nogil=True, cache=True)
def _backward(x, p, h0, y, gy, gx, gp, gh0):
    """Backpropagation through time: gradients of sum(gy * y) into gx (B, T), gp (12,), gh0 (B,)."""
    B, T = x.shape
    for b in range(B):
        dh = 0.0
        for t in range(T - 1, -1, -1):
            xt = x[b, t]
            h = y[b, t - 1] if t > 0 else h0[b]
            r = _sig(p[0] * xt + p[6] + p[3] * h + p[9])
            z = _sig(p[1] * xt + p[7] + p[4] * h + p[10])
            gn = p[5] * h + p[11]
            n = math.tanh(p[2] * xt + p[8] + r * gn)
            dh += gy[b, t]
            dn = dh * (1.0 - z) * (1.0 - n * n)  # through the tanh
            dz = dh * (h - n) * z * (1.0 - z)     # through the sigmoid
            dr = dn * gn * r * (1.0 - r)
            dgn = dn * r
            gp[0] += dr * xt
            gp[1] += dz * xt
            gp[2] += dn * xt
            gp[3] += dr * h
            gp[4] += dz * h
            gp[5] += dgn * h
            gp[6] += dr
            gp[7] += dz
            gp[8] += dn
            gp[9] += dr
            gp[10] += dz
            gp[11] += dgn
            gx[b, t] = dr * p[0] + dz * p[1] + dn * p[2]
            dh = dh * z + dr * p[3] + dz * p[4] + dgn * p[5]
        gh0[b] = dh


def _torch_function():
    import torch

    from effects.training.device import device_tensor, host

    class GRU1Function(torch.autograd.Function):
        """y = GRU1(x; p) over (B, T) with hidden state h0 (B,); compiled forward and backward (on the CPU)."""

        @staticmethod
        def forward(ctx, x, p, h0):
            xn = host(x)
            pn, hn = host(p, xn.dtype), host(h0, xn.dtype)
            y = np.empty_like(xn)
            _forward(xn, pn, hn, y)
            ctx.host = xn, pn, hn, y
            ctx.to = [(t.device, t.dtype) for t in (x, p, h0)]
            return device_tensor(y, *ctx.to[0])

        @staticmethod
        def backward(ctx, gy):
            xn, pn, hn, y = ctx.host
            gx = np.zeros_like(xn)
            gp = np.zeros(N_PARAMS, xn.dtype)
            gh0 = np.zeros(xn.shape[0], xn.dtype)
            _backward(xn, pn, hn, y, host(gy, xn.dtype), gx, gp, gh0)
            return tuple(device_tensor(g, *to) for g, to in zip((gx, gp, gh0), ctx.to))

    return GRU1Function


_FUNCTION = None


def gru1(x, p, h0=None):
    """Run GRU1 with parameters p (12,) over x (B, T) torch tensors; returns (B, T) hidden states."""
    global _FUNCTION
    import torch
    if _FUNCTION is None:
        _FUNCTION = _torch_function()
    if h0 is None:
        h0 = x.new_zeros(x.shape[0])
    return _FUNCTION.apply(x, p, h0)


def init_params(rng: np.random.Generator) -> np.ndarray:
    """Initial GRU1 parameters: U(-1, 1) as ``torch.nn.GRU`` draws them for hidden size 1."""
    return rng.uniform(-1.0, 1.0, N_PARAMS)
