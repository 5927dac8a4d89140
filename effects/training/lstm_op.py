"""An LSTM recurrence with per-example weights as a torch autograd function, numba forward and backward.

Runs on the training thread. The LSTM twin of ``gru_op``: every conditioning method folds, per
knob setting, into the weights of a plain LSTM (spec section 2), so the input pre-activations are
computed by torch and only the recurrence runs per step, in compiled loops parallel over the batch.
Gate order i, f, g, o (spec section 1.1): c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c').
The cell helpers are shared with the dynamic-hyper recurrence in ``gru_op``.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from effects.training.device import device_tensor, host

_jit = dict(nogil=True, fastmath=True, cache=True, error_model="numpy")


@njit(**_jit)
def lstm_cell_forward(i, g, h, c, gates):
    """One LSTM step from input and hidden pre-activations i, g (4H); h, c (H) updated in place.

    Writes the gate activations (i, f, g, o after their nonlinearity) into gates (4H).
    """
    H = h.shape[0]
    for j in range(H):
        ig = 1.0 / (1.0 + np.exp(-(i[j] + g[j])))
        fg = 1.0 / (1.0 + np.exp(-(i[H + j] + g[H + j])))
        gg = np.tanh(i[2 * H + j] + g[2 * H + j])
        og = 1.0 / (1.0 + np.exp(-(i[3 * H + j] + g[3 * H + j])))
        gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j] = ig, fg, gg, og
        c[j] = fg * c[j] + ig * gg
        h[j] = og * np.tanh(c[j])


@njit(**_jit)
def lstm_cell_backward(dh, dc, gates, c, c_prev, d_pre):
    """Backward of one LSTM step.

    dh, dc (H): gradients with respect to h_t and c_t; on return dc holds the gradient with respect
    to c_{t-1} (h_{t-1} reaches h_t only through the pre-activations, so dh is left to the caller).
    d_pre (4H): gradient with respect to the summed pre-activations i + g.
    """
    H = dh.shape[0]
    for j in range(H):
        ig, fg, gg, og = gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j]
        tc = np.tanh(c[j])
        dct = dc[j] + dh[j] * og * (1.0 - tc * tc)
        d_pre[j] = dct * gg * ig * (1.0 - ig)
        d_pre[H + j] = dct * c_prev[j] * fg * (1.0 - fg)
        d_pre[2 * H + j] = dct * ig * (1.0 - gg * gg)
        d_pre[3 * H + j] = dh[j] * tc * og * (1.0 - og)
        dc[j] = dct * fg


@njit(parallel=True, **_jit)
def _forward(xi, w_hh, b_hh, h0, c0, hs, cs, gates):
    """xi (B,T,4H) input pre-activations; w_hh (B,H,4H); b_hh (B,4H); h0, c0 (B,H).

    Writes hs, cs (B,T,H) and the gate activations (B,T,4H).
    """
    B, T, H4 = xi.shape
    H = H4 // 4
    for b in prange(B):
        h = h0[b].copy()
        c = c0[b].copy()
        g = np.empty(H4, xi.dtype)
        for t in range(T):
            for j in range(H4):
                g[j] = b_hh[b, j]
            for k in range(H):
                hk = h[k]
                for j in range(H4):
                    g[j] += hk * w_hh[b, k, j]
            lstm_cell_forward(xi[b, t], g, h, c, gates[b, t])
            hs[b, t] = h
            cs[b, t] = c


@njit(parallel=True, **_jit)
def _backward(d_hs, w_hh, h0, c0, hs, cs, gates, d_xi, d_w_hh, d_b_hh, d_h0, d_c0):
    B, T, H = hs.shape
    for b in prange(B):
        dh = np.zeros(H, hs.dtype)
        dc = np.zeros(H, hs.dtype)
        for t in range(T - 1, -1, -1):
            for j in range(H):
                dh[j] += d_hs[b, t, j]
            c_prev = cs[b, t - 1] if t > 0 else c0[b]
            h_prev = hs[b, t - 1] if t > 0 else h0[b]
            d_pre = d_xi[b, t]
            lstm_cell_backward(dh, dc, gates[b, t], cs[b, t], c_prev, d_pre)
            for j in range(4 * H):
                d_b_hh[b, j] += d_pre[j]
            for k in range(H):
                acc = 0.0
                for j in range(4 * H):
                    d_w_hh[b, k, j] += h_prev[k] * d_pre[j]
                    acc += w_hh[b, k, j] * d_pre[j]
                dh[k] = acc
        d_h0[b] = dh
        d_c0[b] = dc


class LSTMRecurrence(torch.autograd.Function):
    """hs = LSTM recurrence over precomputed input pre-activations, per-example weights.

    Args (forward):
        xi: (B, T, 4H) = x_t W_ih + b_ih, gate order i, f, g, o.
        w_hh: (B, H, 4H) row-vector recurrent weights (may be an expanded shared matrix).
        b_hh: (B, 4H).
        h0, c0: (B, H) initial state.
    Returns:
        (B, T, H) hidden states.
    """

    @staticmethod
    def forward(ctx, xi, w_hh, b_hh, h0, c0):
        np_xi, np_w, np_b, np_h0, np_c0 = (host(t) for t in (xi, w_hh, b_hh, h0, c0))
        B, T, H4 = np_xi.shape
        hs = np.empty((B, T, H4 // 4), np_xi.dtype)
        cs = np.empty_like(hs)
        gates = np.empty((B, T, H4), np_xi.dtype)
        _forward(np_xi, np_w, np_b, np_h0, np_c0, hs, cs, gates)
        ctx.save_for_backward(*(torch.from_numpy(a) for a in (np_w, np_h0, np_c0, hs, cs, gates)))
        ctx.to = xi.device, xi.dtype
        return device_tensor(hs, *ctx.to)

    @staticmethod
    def backward(ctx, d_hs):
        w, h0, c0, hs, cs, gates = (t.numpy() for t in ctx.saved_tensors)
        d = host(d_hs, hs.dtype)
        d_xi = np.zeros(gates.shape, hs.dtype)
        d_w = np.zeros(w.shape, hs.dtype)
        d_b = np.zeros((w.shape[0], w.shape[2]), hs.dtype)
        d_h0 = np.zeros(h0.shape, hs.dtype)
        d_c0 = np.zeros(c0.shape, hs.dtype)
        _backward(d, w, h0, c0, hs, cs, gates, d_xi, d_w, d_b, d_h0, d_c0)
        return tuple(device_tensor(a, *ctx.to) for a in (d_xi, d_w, d_b, d_h0, d_c0))


def lstm_recurrence(xi, w_hh, b_hh, h0=None, c0=None):
    """Functional form of ``LSTMRecurrence``; h0 and c0 default to zeros."""
    B, H = xi.shape[0], xi.shape[2] // 4
    h0 = xi.new_zeros(B, H) if h0 is None else h0
    c0 = xi.new_zeros(B, H) if c0 is None else c0
    if w_hh.dim() == 2:
        w_hh = w_hh.unsqueeze(0).expand(B, -1, -1)
    if b_hh.dim() == 1:
        b_hh = b_hh.unsqueeze(0).expand(B, -1)
    return LSTMRecurrence.apply(xi, w_hh, b_hh, h0, c0)
