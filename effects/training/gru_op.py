"""A GRU recurrence with per-example weights as a torch autograd function, numba forward and backward.

Runs on the training thread. ``torch.nn.GRU`` costs about 26 us per time step on these CPUs and
cannot take a different weight matrix per batch element, which concat-with-FiLM, FiLM and
static-hyper conditioning all need (each knob setting folds into its own GRU weights, spec
section 2). Here the input pre-activations are computed by torch (vectorized over time) and only the
recurrence runs per step, in compiled loops parallel over the batch.

Dynamic hyper (spec section 2.4) cannot fold into per-knob weights: a hyper RNN re-modulates the
cell every sample. ``dynamic_hyper_recurrence`` runs that whole recurrence, for GRU or LSTM cells,
with its shared weights' gradients accumulated per example and summed.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from effects.training.device import device_tensor, host
from effects.training.lstm_op import lstm_cell_backward, lstm_cell_forward

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
        np_xi, np_w, np_b, np_h0 = (host(t) for t in (xi, w_hh, b_hh, h0))
        B, T, H3 = np_xi.shape
        hs = np.empty((B, T, H3 // 3), np_xi.dtype)
        gates = np.empty((B, T, H3), np_xi.dtype)
        gn = np.empty((B, T, H3 // 3), np_xi.dtype)
        _forward(np_xi, np_w, np_b, np_h0, hs, gates, gn)
        ctx.save_for_backward(*(torch.from_numpy(a) for a in (np_w, np_h0, hs, gates, gn)))
        ctx.to = xi.device, xi.dtype
        return device_tensor(hs, *ctx.to)

    @staticmethod
    def backward(ctx, d_hs):
        w, h0, hs, gates, gn = (t.numpy() for t in ctx.saved_tensors)
        d = host(d_hs, hs.dtype)
        d_xi = np.zeros(gates.shape, hs.dtype)
        d_w = np.zeros(w.shape, hs.dtype)
        d_b = np.zeros((w.shape[0], w.shape[2]), hs.dtype)
        d_h0 = np.zeros(h0.shape, hs.dtype)
        _backward(d, w, h0, hs, gates, gn, d_xi, d_w, d_b, d_h0)
        return tuple(device_tensor(a, *ctx.to) for a in (d_xi, d_w, d_b, d_h0))


def gru_recurrence(xi, w_hh, b_hh, h0=None):
    """Functional form of ``GRURecurrence``; h0 defaults to zeros."""
    if h0 is None:
        h0 = xi.new_zeros(xi.shape[0], xi.shape[2] // 3)
    if w_hh.dim() == 2:
        w_hh = w_hh.unsqueeze(0).expand(xi.shape[0], -1, -1)
    if b_hh.dim() == 1:
        b_hh = b_hh.unsqueeze(0).expand(xi.shape[0], -1)
    return GRURecurrence.apply(xi, w_hh, b_hh, h0)


# ---- dynamic hyper (spec section 2.4): a small hyper RNN re-modulates the main cell every sample ----

@njit(**_jit)
def gru_cell_forward(i, g, h, gates):
    """One GRU step from input and hidden pre-activations i, g (3H); h (H) updated in place.

    Writes the gate activations r, z, n into gates (3H).
    """
    H = h.shape[0]
    for j in range(H):
        r = 1.0 / (1.0 + np.exp(-(i[j] + g[j])))
        z = 1.0 / (1.0 + np.exp(-(i[H + j] + g[H + j])))
        n = np.tanh(i[2 * H + j] + r * g[2 * H + j])
        gates[j], gates[H + j], gates[2 * H + j] = r, z, n
        h[j] = n + z * (h[j] - n)


@njit(**_jit)
def gru_cell_backward(dh, gates, g_n, h_prev, d_i, d_g):
    """Backward of one GRU step: dh (H) is the gradient with respect to h_t and, on return, the
    direct part of the gradient with respect to h_{t-1}; g_n (H) is the n part of g.
    Writes the gradients with respect to i and g (3H each)."""
    H = dh.shape[0]
    for j in range(H):
        r, z, n = gates[j], gates[H + j], gates[2 * H + j]
        da_n = dh[j] * (1.0 - z) * (1.0 - n * n)
        da_z = dh[j] * (h_prev[j] - n) * z * (1.0 - z)
        da_r = da_n * g_n[j] * r * (1.0 - r)
        d_i[j], d_i[H + j], d_i[2 * H + j] = da_r, da_z, da_n
        d_g[j], d_g[H + j], d_g[2 * H + j] = da_r, da_z, da_n * r
        dh[j] *= z


@njit(parallel=True, **_jit)
def _dh_forward(lstm, x, hb, wh, whh, bhh, A, a, U, v, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates):
    """Dynamic-hyper recurrence, GRU or LSTM cells (both the hyper and the main cell).

    Per step: hyper pre-activations i^ = h_{t-1} wh + hb, g^ = h^_{t-1} whh + bhh -> h^_t;
    modulations D = h^_t A + a = [d_h | d_x | d_b] (3GH); main pre-activations
    g = d_h * (h_{t-1} U), i = d_x * v x_t + d_b -> h_t. Saves what the backward needs:
    hs, cs (B,T,H); hyh, hyc (B,T,K); hgates (B,T,GK); hgn (B,T,K) the n part of g^ (GRU);
    D (B,T,3GH); uh = h_{t-1} U (B,T,GH); gates (B,T,GH).
    """
    B, T = x.shape
    H, GH = U.shape
    K, GK = whh.shape
    for b in prange(B):
        h = np.zeros(H, x.dtype)
        c = np.zeros(H, x.dtype)
        hh = np.zeros(K, x.dtype)
        hc = np.zeros(K, x.dtype)
        ih = np.empty(GK, x.dtype)
        gh = np.empty(GK, x.dtype)
        pre_i = np.empty(GH, x.dtype)
        pre_g = np.empty(GH, x.dtype)
        for t in range(T):
            for j in range(GK):
                ih[j] = hb[b, j]
                gh[j] = bhh[j]
            for k in range(H):
                for j in range(GK):
                    ih[j] += h[k] * wh[k, j]
            for m in range(K):
                for j in range(GK):
                    gh[j] += hh[m] * whh[m, j]
            if lstm:
                lstm_cell_forward(ih, gh, hh, hc, hgates[b, t])
                hyc[b, t] = hc
            else:
                gru_cell_forward(ih, gh, hh, hgates[b, t])
                hgn[b, t] = gh[2 * K:]
            hyh[b, t] = hh
            d = D[b, t]
            u = uh[b, t]
            d[:] = a
            for m in range(K):
                for j in range(3 * GH):
                    d[j] += hh[m] * A[m, j]
            u[:] = 0.0
            for k in range(H):
                for j in range(GH):
                    u[j] += h[k] * U[k, j]
            xt = x[b, t]
            for j in range(GH):
                pre_g[j] = d[j] * u[j]
                pre_i[j] = d[GH + j] * v[j] * xt + d[2 * GH + j]
            if lstm:
                lstm_cell_forward(pre_i, pre_g, h, c, gates[b, t])
                cs[b, t] = c
            else:
                gru_cell_forward(pre_i, pre_g, h, gates[b, t])
            hs[b, t] = h


@njit(parallel=True, **_jit)
def _dh_backward(lstm, d_hs, x, wh, whh, A, U, v, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates,
                 d_hb, d_wh, d_whh, d_bhh, d_A, d_a, d_U, d_v):
    """Backward of ``_dh_forward``; gradients of shared weights are accumulated per example (axis 0)."""
    B, T = x.shape
    H, GH = U.shape
    K, GK = whh.shape
    dt = hs.dtype
    for b in prange(B):
        zeros_h = np.zeros(H, dt)
        zeros_k = np.zeros(K, dt)
        dh = np.zeros(H, dt)
        dc = np.zeros(H, dt)
        dhh = np.zeros(K, dt)
        dhc = np.zeros(K, dt)
        di = np.empty(GH, dt)
        dg = np.empty(GH, dt)
        g_n = np.empty(GH // 3, dt)
        dD = np.empty(3 * GH, dt)
        duh = np.empty(GH, dt)
        dih = np.empty(GK, dt)
        dgh = np.empty(GK, dt)
        for t in range(T - 1, -1, -1):
            h_prev = hs[b, t - 1] if t > 0 else zeros_h
            hh_prev = hyh[b, t - 1] if t > 0 else zeros_k
            d = D[b, t]
            u = uh[b, t]
            xt = x[b, t]
            for j in range(H):
                dh[j] += d_hs[b, t, j]
            # main cell
            if lstm:
                lstm_cell_backward(dh, dc, gates[b, t], cs[b, t], cs[b, t - 1] if t > 0 else zeros_h, di)
                dg[:] = di
                dh[:] = 0.0
            else:
                Hn = GH // 3
                for j in range(Hn):
                    g_n[j] = d[2 * Hn + j] * u[2 * Hn + j]
                gru_cell_backward(dh, gates[b, t], g_n, h_prev, di, dg)
            # modulations and main weights
            for j in range(GH):
                dD[j] = dg[j] * u[j]
                duh[j] = dg[j] * d[j]
                dD[GH + j] = di[j] * v[j] * xt
                d_v[b, j] += di[j] * d[GH + j] * xt
                dD[2 * GH + j] = di[j]
            for k in range(H):
                acc = 0.0
                for j in range(GH):
                    d_U[b, k, j] += h_prev[k] * duh[j]
                    acc += U[k, j] * duh[j]
                dh[k] += acc
            hh_t = hyh[b, t]
            for j in range(3 * GH):
                d_a[b, j] += dD[j]
            for m in range(K):
                acc = 0.0
                for j in range(3 * GH):
                    d_A[b, m, j] += hh_t[m] * dD[j]
                    acc += A[m, j] * dD[j]
                dhh[m] += acc
            # hyper cell
            if lstm:
                lstm_cell_backward(dhh, dhc, hgates[b, t], hyc[b, t], hyc[b, t - 1] if t > 0 else zeros_k, dih)
                dgh[:] = dih
                dhh[:] = 0.0
            else:
                gru_cell_backward(dhh, hgates[b, t], hgn[b, t], hh_prev, dih, dgh)
            for j in range(GK):
                d_bhh[b, j] += dgh[j]
                d_hb[b, j] += dih[j]
            for m in range(K):
                acc = 0.0
                for j in range(GK):
                    d_whh[b, m, j] += hh_prev[m] * dgh[j]
                    acc += whh[m, j] * dgh[j]
                dhh[m] += acc
            for k in range(H):
                acc = 0.0
                for j in range(GK):
                    d_wh[b, k, j] += h_prev[k] * dih[j]
                    acc += wh[k, j] * dih[j]
                dh[k] += acc


class DynamicHyperRecurrence(torch.autograd.Function):
    """hs of a DynamicHyper-GRU/LSTM (spec section 2.4) with its modulation maps folded.

    The per-gate maps z = Z h^ + z_bias, d^k = D^k z^k (+ e^k for d_b) are linear in the hyper state
    h^, so they fold into one matrix: [d_h | d_x | d_b] = h^ A + a.

    Args (forward):
        lstm: True for LSTM cells (gates i, f, g, o; G = 4), False for GRU (r, z, n; G = 3).
        x: (B, T) audio (no gradient).
        hb: (B, GK) hyper input bias with the knobs folded in, K the hyper size.
        wh: (H, GK) hyper input weights on h_{t-1}; whh: (K, GK), bhh: (GK) hyper recurrent weights.
        A: (K, 3GH), a: (3GH) the folded modulation maps.
        U: (H, GH) main recurrent weights; v: (GH) main input weights.
    Returns:
        (B, T, H) main hidden states.
    """

    @staticmethod
    def forward(ctx, lstm, x, hb, wh, whh, bhh, A, a, U, v):
        arrs = [host(t) for t in (x, hb, wh, whh, bhh, A, a, U, v)]
        np_x = arrs[0]
        B, T = np_x.shape
        H, GH = arrs[7].shape
        K, GK = arrs[3].shape
        f = np_x.dtype
        hs = np.empty((B, T, H), f)
        cs = np.empty((B, T, H if lstm else 0), f)
        hyh = np.empty((B, T, K), f)
        hyc = np.empty((B, T, K if lstm else 0), f)
        hgates = np.empty((B, T, GK), f)
        hgn = np.empty((B, T, 0 if lstm else K), f)
        D = np.empty((B, T, 3 * GH), f)
        uh = np.empty((B, T, GH), f)
        gates = np.empty((B, T, GH), f)
        _dh_forward(lstm, *arrs, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates)
        ctx.lstm = lstm
        ctx.np_saved = (arrs, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates)
        ctx.to = hb.device, hb.dtype
        return device_tensor(hs, *ctx.to)

    @staticmethod
    def backward(ctx, d_hs):
        arrs, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates = ctx.np_saved
        x, hb, wh, whh, bhh, A, a, U, v = arrs
        B = x.shape[0]
        d = host(d_hs, hs.dtype)
        grads = [np.zeros((B,) + w.shape[1:] if w is hb else (B,) + w.shape, hs.dtype)
                 for w in (hb, wh, whh, bhh, A, a, U, v)]
        _dh_backward(ctx.lstm, d, x, wh, whh, A, U, v, hs, cs, hyh, hyc, hgates, hgn, D, uh, gates, *grads)
        d_hb = device_tensor(grads[0], *ctx.to)
        shared = [device_tensor(g.sum(axis=0), *ctx.to) for g in grads[1:]]
        return (None, None, d_hb, *shared)


def dynamic_hyper_recurrence(lstm: bool, x, hb, wh, whh, bhh, A, a, U, v):
    """Functional form of ``DynamicHyperRecurrence``; zero initial states."""
    return DynamicHyperRecurrence.apply(lstm, x, hb, wh, whh, bhh, A, a, U, v)
