"""A GRU recurrence with per-example weights as a torch autograd function, numba forward and backward.

Runs on the training thread. ``torch.nn.GRU`` costs about 26 us per time step on these CPUs and
cannot take a different weight matrix per batch element, which concat-with-FiLM, FiLM and
static-hyper conditioning all need (each knob setting folds into its own GRU weights, spec
section 2). Here the input pre-activations are computed by torch (vectorized over time) and only the
recurrence runs per step, in compiled loops parallel over the batch.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

_jit = dict(nogil=True, fastmath=True, cache=True, error_model="numpy")


@njit(parallel=True, **_jit)
def _forward(xi, w_hh, b_hh, h0, hs, gates, gn):
    """xi (B,T,3H) input pre-activations; w_hh (B,H,3H); b_hh (B,3H); h0 (B,H).

    Writes hs (B,T,H), gates (B,T,3H) = (r, z, n) and gn (B,T,H) = the n part of h w_hh + b_hh.
    """
    B, T, H3 = xi.shape
    H = H3 // 3
    for b in prange(B):
        h = h0[b].copy()
        g = np.empty(H3, xi.dtype)
        for t in range(T):
            for j in range(H3):
                g[j] = b_hh[b, j]
            for k in range(H):
                hk = h[k]
                for j in range(H3):
                    g[j] += hk * w_hh[b, k, j]
            for j in range(H):
                r = 1.0 / (1.0 + np.exp(-(xi[b, t, j] + g[j])))
                z = 1.0 / (1.0 + np.exp(-(xi[b, t, H + j] + g[H + j])))
                n = np.tanh(xi[b, t, 2 * H + j] + r * g[2 * H + j])
                gates[b, t, j] = r
                gates[b, t, H + j] = z
                gates[b, t, 2 * H + j] = n
                gn[b, t, j] = g[2 * H + j]
                h[j] = n + z * (h[j] - n)
                hs[b, t, j] = h[j]


@njit(parallel=True, **_jit)
def _backward(d_hs, w_hh, h0, hs, gates, gn, d_xi, d_w_hh, d_b_hh, d_h0):
    B, T, H = hs.shape
    for b in prange(B):
        dh = np.zeros(H, hs.dtype)
        dg = np.empty(3 * H, hs.dtype)
        for t in range(T - 1, -1, -1):
            for j in range(H):
                dh[j] += d_hs[b, t, j]
            for j in range(H):
                r = gates[b, t, j]
                z = gates[b, t, H + j]
                n = gates[b, t, 2 * H + j]
                hp = hs[b, t - 1, j] if t > 0 else h0[b, j]
                da_n = dh[j] * (1.0 - z) * (1.0 - n * n)
                da_z = dh[j] * (hp - n) * z * (1.0 - z)
                da_r = da_n * gn[b, t, j] * r * (1.0 - r)
                d_xi[b, t, j] = da_r
                d_xi[b, t, H + j] = da_z
                d_xi[b, t, 2 * H + j] = da_n
                dg[j] = da_r
                dg[H + j] = da_z
                dg[2 * H + j] = da_n * r
                dh[j] = dh[j] * z  # direct path h' = ... + z h
            for j in range(3 * H):
                d_b_hh[b, j] += dg[j]
            for k in range(H):
                hp = hs[b, t - 1, k] if t > 0 else h0[b, k]
                acc = 0.0
                for j in range(3 * H):
                    d_w_hh[b, k, j] += hp * dg[j]
                    acc += w_hh[b, k, j] * dg[j]
                dh[k] += acc
        for j in range(H):
            d_h0[b, j] = dh[j]


class GRURecurrence(torch.autograd.Function):
    """hs = GRU recurrence over precomputed input pre-activations, per-example weights.

    Args (forward):
        xi: (B, T, 3H) = x_t W_ih + b_ih, gate order r, z, n.
        w_hh: (B, H, 3H) row-vector recurrent weights (may be an expanded shared matrix).
        b_hh: (B, 3H).
        h0: (B, H) initial state.
    Returns:
        (B, T, H) hidden states.
    """

    @staticmethod
    def forward(ctx, xi, w_hh, b_hh, h0):
        dtype = xi.dtype
        np_xi = xi.detach().contiguous().numpy()
        np_w = w_hh.detach().contiguous().numpy()
        np_b = b_hh.detach().contiguous().numpy()
        np_h0 = h0.detach().contiguous().numpy()
        B, T, H3 = np_xi.shape
        hs = np.empty((B, T, H3 // 3), np_xi.dtype)
        gates = np.empty((B, T, H3), np_xi.dtype)
        gn = np.empty((B, T, H3 // 3), np_xi.dtype)
        _forward(np_xi, np_w, np_b, np_h0, hs, gates, gn)
        ctx.save_for_backward(*(torch.from_numpy(a) for a in (np_w, np_h0, hs, gates, gn)))
        return torch.from_numpy(hs).to(dtype)

    @staticmethod
    def backward(ctx, d_hs):
        w, h0, hs, gates, gn = (t.numpy() for t in ctx.saved_tensors)
        d = d_hs.detach().contiguous().numpy().astype(hs.dtype, copy=False)
        d_xi = np.zeros(gates.shape, hs.dtype)
        d_w = np.zeros(w.shape, hs.dtype)
        d_b = np.zeros((w.shape[0], w.shape[2]), hs.dtype)
        d_h0 = np.zeros(h0.shape, hs.dtype)
        _backward(d, w, h0, hs, gates, gn, d_xi, d_w, d_b, d_h0)
        return tuple(torch.from_numpy(a) for a in (d_xi, d_w, d_b, d_h0))


def gru_recurrence(xi, w_hh, b_hh, h0=None):
    """Functional form of ``GRURecurrence``; h0 defaults to zeros."""
    if h0 is None:
        h0 = xi.new_zeros(xi.shape[0], xi.shape[2] // 3)
    if w_hh.dim() == 2:
        w_hh = w_hh.unsqueeze(0).expand(xi.shape[0], -1, -1)
    if b_hh.dim() == 1:
        b_hh = b_hh.unsqueeze(0).expand(xi.shape[0], -1)
    return GRURecurrence.apply(xi, w_hh, b_hh, h0)
