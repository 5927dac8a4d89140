"""Per-sample numba kernels: compiled, GIL-free, allocation-free.

Runs on the audio thread (and on whatever thread renders or benchmarks). Every kernel takes
preallocated float32 arrays and writes its result in place; none allocates, none holds the GIL.
Activations use a rational tanh that LLVM vectorizes (``math.exp`` does not vectorize without
SVML): max abs error 2.6e-7 against float64 ``tanh``, below float32 resolution near 1.
"""
import math

import numpy as np
from numba import njit

_f32 = np.float32
_HALF = _f32(0.5)
# Rational minimax approximation of tanh on [-7.9, 7.9] (odd degree-13 over even degree-6);
# beyond the clamp tanh equals +-1 in float32.
_T1, _T3, _T5, _T7, _T9, _T11, _T13 = (_f32(v) for v in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (_f32(v) for v in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))
_TANH_CLAMP = _f32(7.90531110763549805)

# error_model="numpy": float division without Python's zero check, which would block vectorization.
_jit = dict(nogil=True, fastmath=True, cache=True, error_model="numpy")


@njit(inline="always", **_jit)
def tanh32(x):
    """tanh(x) for float32 x, vectorizable."""
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = x * (_T1 + x2 * (_T3 + x2 * (_T5 + x2 * (_T7 + x2 * (_T9 + x2 * (_T11 + x2 * _T13))))))
    q = _B0 + x2 * (_B2 + x2 * (_B4 + x2 * _B6))
    return p / q


@njit(inline="always", **_jit)
def sigmoid32(x):
    """Logistic function via sigma(x) = (1 + tanh(x/2)) / 2."""
    return _HALF + _HALF * tanh32(_HALF * x)


@njit(**_jit)
def gru_run(x, w_ih, w_hh, b_ih, b_hh, w_out, b_out, h, g, pre, out):
    """Run a single-layer GRU with a linear read-out over one block, in place.

    Row-vector layout (the transposes of ``torch.nn.GRU``'s matrices), gate order r, z, n:
    i = x_t w_ih + b_ih, g = h w_hh + b_hh, r = s(i_r + g_r), z = s(i_z + g_z),
    n = tanh(i_n + r * g_n), h' = n + z (h - n), y_t = w_out . h' + b_out.
    Each inner loop touches few arrays so that LLVM vectorizes it.

    Args:
        x: (T,) input samples.
        w_ih: (3H,) input weights (one input channel).
        w_hh: (H, 3H) recurrent weights, row k multiplies h[k].
        b_ih, b_hh: (3H,) biases.
        w_out: (H,) read-out weights; b_out: scalar read-out bias.
        h: (H,) hidden state, updated in place.
        g: (3H,) scratch for h w_hh + b_hh; pre: (3H,) scratch for the gates.
        out: (T,) output samples (may be x).
    """
    H = h.shape[0]
    H2 = 2 * H
    H3 = 3 * H
    for t in range(x.shape[0]):
        xt = x[t]
        for j in range(H3):
            g[j] = b_hh[j]
        for k in range(H):
            hk = h[k]
            for j in range(H3):
                g[j] += hk * w_hh[k, j]
        for j in range(H3):
            pre[j] = xt * w_ih[j] + b_ih[j]
        for j in range(H2):
            pre[j] += g[j]
        for j in range(H2):
            pre[j] = sigmoid32(pre[j])  # r, z
        for j in range(H):
            pre[H2 + j] += pre[j] * g[H2 + j]
        for j in range(H):
            pre[H2 + j] = tanh32(pre[H2 + j])  # n
        for j in range(H):
            n = pre[H2 + j]
            h[j] = n + pre[H + j] * (h[j] - n)
        acc = b_out
        for j in range(H):
            acc += w_out[j] * h[j]
        out[t] = acc


@njit(**_jit)
def ramp_gain(buf, gain_start, gain_end):
    """Multiply buf in place by a gain moving linearly from gain_start to gain_end.

    The last sample gets gain_end exactly, so consecutive ramps join without a step.
    """
    n = buf.shape[0]
    if gain_start == gain_end:
        if gain_end != 1.0:
            for t in range(n):
                buf[t] *= gain_end
        return
    step = (gain_end - gain_start) / n
    for t in range(n):
        buf[t] *= gain_start + step * (t + 1)


@njit(nogil=True, cache=True)  # no fastmath: it would assume NaN and inf away
def count_nonfinite(x):
    """Number of NaN or infinite samples in x."""
    bad = 0
    for t in range(x.shape[0]):
        if not math.isfinite(x[t]):
            bad += 1
    return bad


@njit(nogil=True, cache=True)
def ramp_toward(value, target, max_step):
    """Move each value toward its target by at most max_step; return True if any moved."""
    moved = False
    for i in range(value.shape[0]):
        d = target[i] - value[i]
        if d != 0.0:
            moved = True
            if d > max_step[i]:
                d = max_step[i]
            elif d < -max_step[i]:
                d = -max_step[i]
            value[i] += d
    return moved


@njit(nogil=True, cache=True)
def all_equal(a, b):
    """True if the two 1-D arrays hold equal values."""
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


@njit(inline="always", **_jit)
def _gru_gates(i, g, h):
    """GRU update of h (H) in place from input and hidden pre-activations i, g (3H); i is overwritten."""
    H = h.shape[0]
    H2 = 2 * H
    for j in range(H2):
        i[j] = sigmoid32(i[j] + g[j])  # r, z
    for j in range(H):
        n = tanh32(i[H2 + j] + i[j] * g[H2 + j])
        h[j] = n + i[H + j] * (h[j] - n)


@njit(inline="always", **_jit)
def _lstm_gates(pre, h, c):
    """LSTM update of h, c (H) in place from summed pre-activations (4H, gates i, f, g, o); pre is overwritten."""
    H = h.shape[0]
    for j in range(H):
        pre[j] = sigmoid32(pre[j])
        pre[H + j] = sigmoid32(pre[H + j])
        pre[2 * H + j] = tanh32(pre[2 * H + j])
        pre[3 * H + j] = sigmoid32(pre[3 * H + j])
    for j in range(H):
        c[j] = pre[H + j] * c[j] + pre[j] * pre[2 * H + j]
        h[j] = pre[3 * H + j] * tanh32(c[j])


@njit(**_jit)
def lstm_run(x, w_ih, w_hh, b_ih, b_hh, w_out, b_out, h, c, pre, out):
    """Run a single-layer LSTM with a linear read-out over one block, in place.

    Row-vector layout (the transposes of ``torch.nn.LSTM``'s matrices), gate order i, f, g, o:
    a = x_t w_ih + b_ih + h w_hh + b_hh, c' = s(a_f) c + s(a_i) tanh(a_g), h' = s(a_o) tanh(c'),
    y_t = w_out . h' + b_out.

    Args:
        x: (T,) input samples.
        w_ih: (4H,) input weights; w_hh: (H, 4H) recurrent weights; b_ih, b_hh: (4H,) biases.
        w_out: (H,) read-out weights; b_out: scalar read-out bias.
        h, c: (H,) hidden and cell state, updated in place.
        pre: (4H,) scratch for the pre-activations.
        out: (T,) output samples (may be x).
    """
    H = h.shape[0]
    H4 = 4 * H
    for t in range(x.shape[0]):
        xt = x[t]
        for j in range(H4):
            pre[j] = xt * w_ih[j] + b_ih[j] + b_hh[j]
        for k in range(H):
            hk = h[k]
            for j in range(H4):
                pre[j] += hk * w_hh[k, j]
        _lstm_gates(pre, h, c)
        acc = b_out
        for j in range(H):
            acc += w_out[j] * h[j]
        out[t] = acc


@njit(**_jit)
def dynamic_hyper_run(lstm, x, hyper_bias, wh, whh, bhh, A, a, U, v, w_out, b_out,
                      h, c, hh, hc, ih, gh, d, u, pre, out):
    """Run a DynamicHyper-GRU/LSTM with a linear read-out over one block, in place (spec section 2.4).

    Per sample: the hyper cell (hidden size K) takes [h_{t-1}; knobs] (the knob part folded into
    hyper_bias) and updates hh (and hc); the modulations [d_h | d_x | d_b] = hh A + a scale the main
    cell's pre-activations, g = d_h * (h U) and i = d_x * v x_t + d_b, which update h (and c).

    Args:
        lstm: LSTM cells (G = 4) if True, else GRU cells (G = 3).
        x: (T,) input samples.
        hyper_bias: (GK,) hyper input bias with the knobs folded in.
        wh: (H, GK), whh: (K, GK), bhh: (GK,) hyper cell weights, row-vector layout.
        A: (K, 3GH), a: (3GH,) folded modulation maps.
        U: (H, GH) main recurrent weights; v: (GH,) main input weights.
        w_out: (H,) read-out weights; b_out: scalar read-out bias.
        h, c: (H,) main state; hh, hc: (K,) hyper state (c, hc unused for GRU); updated in place.
        ih, gh: (GK,), d: (3GH,), u, pre: (GH,) scratch.
        out: (T,) output samples (may be x).
    """
    H, GH = U.shape
    K, GK = whh.shape
    for t in range(x.shape[0]):
        xt = x[t]
        for j in range(GK):
            ih[j] = hyper_bias[j]
            gh[j] = bhh[j]
        for k in range(H):
            hk = h[k]
            for j in range(GK):
                ih[j] += hk * wh[k, j]
        for m in range(K):
            hm = hh[m]
            for j in range(GK):
                gh[j] += hm * whh[m, j]
        if lstm:
            for j in range(GK):
                ih[j] += gh[j]
            _lstm_gates(ih, hh, hc)
        else:
            _gru_gates(ih, gh, hh)
        for j in range(3 * GH):
            d[j] = a[j]
        for m in range(K):
            hm = hh[m]
            for j in range(3 * GH):
                d[j] += hm * A[m, j]
        for j in range(GH):
            u[j] = 0.0
        for k in range(H):
            hk = h[k]
            for j in range(GH):
                u[j] += hk * U[k, j]
        for j in range(GH):
            u[j] *= d[j]  # g
            pre[j] = d[GH + j] * v[j] * xt + d[2 * GH + j]  # i
        if lstm:
            for j in range(GH):
                pre[j] += u[j]
            _lstm_gates(pre, h, c)
        else:
            _gru_gates(pre, u, h)
        acc = b_out
        for j in range(H):
            acc += w_out[j] * h[j]
        out[t] = acc


@njit(**_jit)
def leaky_relu(buf, slope):
    """buf = max(buf, slope * buf) in place (NumPy would need a temporary for slope * buf)."""
    for i in range(buf.shape[0]):
        if buf[i] < 0.0:
            buf[i] *= slope


@njit(**_jit)
def scale_columns(m, scale, out):
    """out[k, j] = m[k, j] * scale[j] (NumPy's broadcast multiply allocates an iteration buffer)."""
    for k in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[k, j] = m[k, j] * scale[j]
