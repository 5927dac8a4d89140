"""Causal micro-TCN with FiLM conditioning [mtcn], streamed with per-layer dilated history.

Model (spec section 6): e = ReLU MLP of the conditions p; block n is a dilated causal conv
(kernel K, no bias), BatchNorm (running statistics) and FiLM [gamma | beta] = A_n e, PReLU, plus
a 1x1 residual that lags the conv's newest input by one sample; the output is
tanh(1x1 conv C -> 1 + bias). The SignalTrain TCN-300-C has C = 32 channels, K = 13 and
dilations 1/10/100/1000; knobnet's own ``knobnet-tcn`` files (``effects.training.tcn_model``)
may have any channels, kernel and dilations.

Streaming: while the conditions stand still BN and FiLM fold into one scale and offset per
channel, scale = gamma / sqrt(var + eps), offset = beta - scale * mean, recomputed by
``TCNStream.condition`` only when a knob moves. Each block keeps its input history in a mirrored
ring buffer (every row written twice, N rows apart) so that any window of up to N rows is
contiguous, and computes only the new samples: no receptive field (13,333 samples for
TCN-300-C) is recomputed per block. A fresh or reset stream holds the history that silence
would have left, so from reset the stream equals ``model(concat(zeros(R - 1), x), p)``.

Threads: ``TCNStream.run`` and ``condition`` run on the audio thread (numba kernels, no
allocation); loading and ``stream()`` run on the GUI/CLI thread.

[mtcn] C. J. Steinmetz, J. D. Reiss, "Efficient neural networks for real-time modeling of analog
dynamic range compression", AES 2022.
"""
from __future__ import annotations

import pathlib
import zipfile

import numpy as np
from numba import njit

from effects.kernels import tanh32
from effects.modelfile import load_npz_model, read_state_dict, require_keys
from effects.pedal import ModelFileError

TCN_FORMAT = "knobnet-tcn"  # format tag of knobnet's own micro-TCN weights files
SIGNALTRAIN_DILATIONS = (1, 10, 100, 1000)  # TCN-300-C: 4 blocks, dilation growth 10
CHUNK = 128  # most samples computed per pass through the blocks (see _block)
BN_EPS = 1e-5
TANH_FLOPS = 30  # flops counted per tanh, as for the recurrent models

_jit = dict(nogil=True, fastmath=True, cache=True, error_model="numpy")


@njit(**_jit)
def _block(src, row0, n, dilation, w, scale, offset, scale_from, offset_from, ramp_done, ramp_len,
           slope, res, tap, act):
    """One TCN block over n new samples: one small matrix product per tap, then the epilogue.

    act[t, c] = PReLU(scale[c] * sum_{k, i} src[row0 + t - (K-1-k) d, i] w[k, i, c] + offset[c])
    + res[c] * src[row0 + t - 1, i_c], with i_c = c (grouped residual) or 0 (one input channel).
    While a ramp runs, scale and offset move linearly from their ``_from`` values, reaching the
    targets exactly at sample ramp_len of the ramp.
    The products go to BLAS sgemm through ``np.dot`` (no allocation); n <= CHUNK keeps each
    one small enough that OpenBLAS runs it on the calling thread.

    Args:
        src: (rows, C_in) input history, row0 + t being the newest input of output t.
        row0: row of the first new sample; n: number of new samples; dilation: d.
        w: (K, C_in, C) taps, tap K-1 on the newest sample.
        scale, offset: (C,) folded BN+FiLM targets; scale_from, offset_from: (C,) at ramp start.
        ramp_done, ramp_len: samples of the ramp already run, and its length (0: no ramp).
        slope, res: (C,) PReLU slopes, residual weights.
        tap: (>= n, C) scratch for one tap's product.
        act: (>= n, C) output.
    """
    K = w.shape[0]
    cin = w.shape[1]
    C = w.shape[2]
    conv = act[:n]
    part = tap[:n]
    for k in range(K):
        row = row0 - (K - 1 - k) * dilation
        if k == 0:
            np.dot(src[row:row + n], w[k], conv)
        else:
            np.dot(src[row:row + n], w[k], part)
            for t in range(n):
                ct = conv[t]
                pt = part[t]
                for c in range(C):
                    ct[c] += pt[c]
    for t in range(n):
        prev = src[row0 + t - 1]
        out = conv[t]
        ramping = ramp_done + t + 1 < ramp_len
        f = np.float32((ramp_done + t + 1) / ramp_len) if ramping else np.float32(1.0)
        for c in range(C):
            sc = scale[c]
            of = offset[c]
            if ramping:
                sc = (1 - f) * scale_from[c] + f * sc
                of = (1 - f) * offset_from[c] + f * of
            v = sc * out[c] + of
            if v < 0.0:
                v *= slope[c]
            out[c] = v + res[c] * prev[c if cin > 1 else 0]


@njit(**_jit)
def _run(x, y, audio, rings, pos, w0, w, dilations, scale, offset, start, ramp, slope, res, w_out, b_out,
         tap, act):
    """Stream x through the TCN into y; see ``TCNStream`` for the buffers."""
    size = audio.shape[0] // 2
    history = size - CHUNK
    blocks = dilations.shape[0]
    wpos = pos[0]
    begin = 0
    while begin < x.shape[0]:
        n = min(CHUNK, x.shape[0] - begin)
        row0 = wpos if wpos >= history else wpos + size  # rows row0 - history .. row0 + n - 1 are valid
        for t in range(n):
            r = (wpos + t) % size
            audio[r, 0] = x[begin + t]
            audio[r + size, 0] = x[begin + t]
        _block(audio, row0, n, dilations[0], w0, scale[0], offset[0], start[0, 0], start[1, 0],
               ramp[0], ramp[1], slope[0], res[0], tap, act)
        for b in range(1, blocks):
            ring = rings[b - 1]
            for t in range(n):
                r = (wpos + t) % size
                ring[r] = act[t]
                ring[r + size] = act[t]
            _block(ring, row0, n, dilations[b], w[b - 1], scale[b], offset[b], start[0, b], start[1, b],
                   ramp[0], ramp[1], slope[b], res[b], tap, act)
        for t in range(n):
            a = act[t]
            s = b_out
            for c in range(w_out.shape[0]):
                s += w_out[c] * a[c]
            y[begin + t] = tanh32(s)
        wpos = (wpos + n) % size
        begin += n
        ramp[0] += n
        if ramp[0] >= ramp[1]:
            ramp[0] = 0
            ramp[1] = 0
    pos[0] = wpos


@njit(**_jit)
def _fill_silence(audio, rings, w, scale, offset, slope, res, level):
    """Fill the history with what an endless silence leaves: zeros in, a constant per channel after.

    level: (2, C) scratch for the constant output of a block and of the next one.
    """
    audio[:] = 0.0
    C = scale.shape[1]
    cur, nxt = level[0], level[1]
    for c in range(C):  # block 0 of zeros: the conv and the residual give 0
        v = offset[0, c]
        cur[c] = v * slope[0, c] if v < 0.0 else v
    for b in range(1, scale.shape[0]):
        ring = rings[b - 1]
        for r in range(ring.shape[0]):
            ring[r] = cur
        wb = w[b - 1]
        for c in range(C):
            s = np.float32(0.0)
            for k in range(wb.shape[0]):
                for i in range(C):
                    s += wb[k, i, c] * cur[i]
            v = scale[b, c] * s + offset[b, c]
            if v < 0.0:
                v *= slope[b, c]
            nxt[c] = v + res[b, c] * cur[c]
        cur[:] = nxt


@njit(**_jit)
def _ramp_from_here(start, scale, offset, ramp):
    """Start a new ramp from where the current one stands: start = (scale, offset) now."""
    done, length = ramp[0], ramp[1]
    f = np.float32(done / length) if done < length else np.float32(1.0)
    for b in range(scale.shape[0]):
        for c in range(scale.shape[1]):
            start[0, b, c] = (1 - f) * start[0, b, c] + f * scale[b, c]
            start[1, b, c] = (1 - f) * start[1, b, c] + f * offset[b, c]


@njit(**_jit)
def _mix(a, b, mix):
    """a = (1 - mix) a + mix b in place (exactly b at mix = 1)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = (1.0 - mix) * a[i, j] + mix * b[i, j]


@njit(**_jit)
def _dense_relu(w, b, x, out):
    """out = ReLU(w x + b), written in place."""
    for j in range(out.shape[0]):
        s = b[j]
        for i in range(x.shape[0]):
            s += w[j, i] * x[i]
        out[j] = max(s, 0.0)


@njit(**_jit)
def _film(p, gen_w, gen_b, e0, e1, e2, adapt_w, adapt_b, mean, var, scale, offset):
    """Fold BN and FiLM for conditions p into scale and offset, (blocks, C) each."""
    _dense_relu(gen_w[0], gen_b[0], p, e0)
    _dense_relu(gen_w[1], gen_b[1], e0, e1)
    _dense_relu(gen_w[2], gen_b[2], e1, e2)
    C = scale.shape[1]
    for b in range(scale.shape[0]):
        for c in range(C):
            g = adapt_b[b, c]
            beta = adapt_b[b, C + c]
            for i in range(e2.shape[0]):
                g += adapt_w[b, c, i] * e2[i]
                beta += adapt_w[b, C + c, i] * e2[i]
            sc = g / np.sqrt(var[b, c] + BN_EPS)
            scale[b, c] = sc
            offset[b, c] = beta - sc * mean[b, c]


class MicroTCN:
    """Weights of a FiLM-conditioned causal micro-TCN, as float32 arrays in streaming layout.

    Any channel count, kernel size and dilations; the state dict uses the micro-TCN key names
    (spec section 6), whether it comes from a SignalTrain TorchScript file or from knobnet's
    own ``knobnet-tcn`` weights file (``effects.training.tcn_model``).

    Attributes:
        dilations: (blocks,) int64. kernel_size: K. channels: C. num_conds: N_c.
        receptive_field: 1 + (K - 1) * sum(dilations) samples (13,333 for TCN-300-C).
        params: trainable parameters (BN running statistics not counted).
        meta: the weights file's metadata (knob names and ranges of a knobnet file; {} otherwise).
    """

    def __init__(self, state: dict[str, np.ndarray], dilations, meta: dict | None = None):
        blocks = len(dilations)
        f32 = np.float32
        self.meta = dict(meta or {})
        self.gen_w = tuple(np.ascontiguousarray(state[f"gen.{i}.weight"], f32) for i in (0, 2, 4))
        self.gen_b = tuple(np.ascontiguousarray(state[f"gen.{i}.bias"], f32) for i in (0, 2, 4))
        conv = [state[f"blocks.{n}.conv1.weight"] for n in range(blocks)]  # (C, C_in, K)
        self.channels, _, self.kernel_size = conv[0].shape
        c = self.channels
        # tap-major (K, C_in, C): the output channel is the contiguous, vectorized axis
        self.w0 = np.ascontiguousarray(conv[0].transpose(2, 1, 0), f32)
        if blocks > 1:
            self.w = np.ascontiguousarray(np.stack([w.transpose(2, 1, 0) for w in conv[1:]]), f32)
        else:
            self.w = np.zeros((0, self.kernel_size, c, c), f32)
        self.dilations = np.array(dilations, np.int64)

        def stack(key):
            return np.ascontiguousarray(np.stack([state[f"blocks.{n}.{key}"] for n in range(blocks)]), f32)
        self.adapt_w = stack("film.adaptor.weight")  # (blocks, 2C, E), gammas first
        self.adapt_b = stack("film.adaptor.bias")
        self.bn_mean = stack("film.bn.running_mean")
        self.bn_var = stack("film.bn.running_var")
        self.slope = stack("relu.weight")
        self.res = stack("res.weight").reshape(blocks, c)
        self.w_out = np.ascontiguousarray(state["output.weight"].reshape(c), f32)
        self.b_out = f32(state["output.bias"][0])
        self.num_conds = self.gen_w[0].shape[1]
        self.receptive_field = 1 + (self.kernel_size - 1) * int(self.dilations.sum())
        self.params = sum(v.size for k, v in state.items()
                          if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))

    @staticmethod
    def expected_shapes(blocks: int, channels: int, kernel_size: int, num_conds: int,
                        cond_sizes=(16, 32, 32)) -> dict[str, tuple]:
        """State-dict keys and shapes of a micro-TCN (spec section 6)."""
        c, k = channels, kernel_size
        e1, e2, e3 = cond_sizes
        shapes = {"gen.0.weight": (e1, num_conds), "gen.0.bias": (e1,), "gen.2.weight": (e2, e1),
                  "gen.2.bias": (e2,), "gen.4.weight": (e3, e2), "gen.4.bias": (e3,),
                  "output.weight": (1, c, 1), "output.bias": (1,)}
        for n in range(blocks):
            shapes.update({f"blocks.{n}.conv1.weight": (c, 1 if n == 0 else c, k),
                           f"blocks.{n}.film.bn.running_mean": (c,), f"blocks.{n}.film.bn.running_var": (c,),
                           f"blocks.{n}.film.adaptor.weight": (2 * c, e3), f"blocks.{n}.film.adaptor.bias": (2 * c,),
                           f"blocks.{n}.relu.weight": (c,), f"blocks.{n}.res.weight": (c, 1, 1)})
        return shapes

    @classmethod
    def load(cls, path, num_conds: int = 2) -> "MicroTCN":
        """Load a knobnet ``knobnet-tcn`` weights file (.npz, layout in its metadata) or a SignalTrain
        TCN-300-C state dict (TorchScript or torch.save: 4 blocks, kernel 13, dilations 1/10/100/1000,
        32 channels); ModelFileError (one line) if it is neither."""
        path = pathlib.Path(path)
        if _is_npz(path):
            state, meta = load_npz_model(path, TCN_FORMAT, "micro-TCN")
            try:
                dilations = [int(d) for d in meta["dilations"]]
                layout = (len(dilations), int(meta["channels"]), int(meta["kernel_size"]), num_conds,
                          tuple(int(n) for n in meta["cond_sizes"]))
            except (KeyError, TypeError, ValueError):
                raise ModelFileError(f"{path.name}: micro-TCN metadata lacks its layout "
                                     "(dilations, channels, kernel_size, cond_sizes)") from None
            what = f"micro-TCN ({layout[0]} blocks, kernel {layout[2]}, {layout[1]} channels)"
        else:
            state, meta = read_state_dict(path), {}
            dilations = list(SIGNALTRAIN_DILATIONS)
            layout = (4, 32, 13, num_conds, (16, 32, 32))
            what = "micro-TCN (4 blocks, kernel 13, 32 channels)"
            if not all(np.all(np.isfinite(v)) for v in state.values()):
                raise ModelFileError(f"{path.name}: weights hold NaN or infinite values")
        if layout[0] < 1 or min(dilations) < 1 or layout[2] < 2:
            raise ModelFileError(f"{path.name}: a micro-TCN needs blocks, dilations >= 1 and kernel >= 2")
        require_keys(state, cls.expected_shapes(*layout), what, path)
        if f"blocks.{layout[0]}.conv1.weight" in state:
            raise ModelFileError(f"{path.name}: more than {layout[0]} TCN blocks; not a {what}")
        return cls(state, dilations, meta)

    def stream(self) -> "TCNStream":
        return TCNStream(self)

    def weights_into(self, cond: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> None:
        """Fold BN and FiLM for conditions cond (num_conds,) into weights = (scale, offset) of a
        stream (``TCNStream.weights``), at once, without a ramp (training/evaluation interface)."""
        e = tuple(np.zeros(w.shape[0], np.float32) for w in self.gen_w)
        _film(np.asarray(cond, np.float32), self.gen_w, self.gen_b, *e, self.adapt_w, self.adapt_b,
              self.bn_mean, self.bn_var, weights[0], weights[1])

    @property
    def ops_per_sample(self) -> int:
        """Flops per output sample: 2 per MAC; per channel and block 2 for scale+offset, 2 for
        PReLU (compare, multiply) and 2 for the residual; the output conv and its tanh."""
        c, k = self.channels, self.kernel_size
        blocks = len(self.dilations)
        conv_macs = k * 1 * c + (blocks - 1) * k * c * c
        return 2 * conv_macs + blocks * c * (2 + 2 + 2) + (2 * c + 1) + TANH_FLOPS


def _is_npz(path: pathlib.Path) -> bool:
    """A numpy archive (knobnet weights file) rather than a PyTorch zip archive."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return "format.npy" in z.namelist()


class TCNStream:
    """Streaming state of one MicroTCN: mirrored ring buffers and the folded conditioning.

    Attributes:
        scale, offset: (blocks, C) folded BN+FiLM the audio uses, set by ``condition``.
    """

    def __init__(self, model: MicroTCN):
        self.model = model
        blocks = len(model.dilations)
        self.size = (model.kernel_size - 1) * int(model.dilations.max()) + CHUNK  # ring rows N
        self.audio = np.zeros((2 * self.size, 1), np.float32)
        c = model.channels
        self.rings = np.zeros((blocks - 1, 2 * self.size, c), np.float32)
        self.scale = np.zeros((blocks, c), np.float32)
        self.offset = np.zeros((blocks, c), np.float32)
        self.weights = (self.scale, self.offset)  # what MicroTCN.weights_into folds into
        self._pos = np.zeros(1, np.int64)
        self._tap = np.zeros((CHUNK, c), np.float32)
        self._act = np.zeros((CHUNK, c), np.float32)
        self._level = np.zeros((2, c), np.float32)
        self._other = (np.zeros_like(self.scale), np.zeros_like(self.offset))
        self._start = np.zeros((2, blocks, c), np.float32)  # scale, offset at ramp start
        self._ramp = np.zeros(2, np.int64)  # samples run, ramp length
        self._e = tuple(np.zeros(w.shape[0], np.float32) for w in model.gen_w)
        self._fresh = True

    def condition(self, p: np.ndarray, p_other: np.ndarray | None = None, mix: float = 0.0,
                  ramp_samples: int = 0) -> None:
        """Set the conditions: scale and offset for p (num_conds,), float32; no allocation.

        With p_other, the FiLM parameters are interpolated, (1 - mix) FiLM(p) + mix FiLM(p_other),
        which is how a switch ramps between two trained settings (scale and offset are linear
        in gamma and beta, so the folded values interpolate alike). With ramp_samples, the
        stream moves from its current scale and offset to the new ones linearly over the next
        ramp_samples samples it runs (a fresh stream takes them at once).
        """
        m = self.model
        if ramp_samples > 0 and not self._fresh:
            _ramp_from_here(self._start, self.scale, self.offset, self._ramp)
            self._ramp[0], self._ramp[1] = 0, ramp_samples
        else:
            self._ramp[:] = 0
        e0, e1, e2 = self._e
        _film(p, m.gen_w, m.gen_b, e0, e1, e2, m.adapt_w, m.adapt_b, m.bn_mean, m.bn_var,
              self.scale, self.offset)
        if p_other is not None and mix != 0.0:
            scale, offset = self._other
            _film(p_other, m.gen_w, m.gen_b, e0, e1, e2, m.adapt_w, m.adapt_b, m.bn_mean, m.bn_var,
                  scale, offset)
            _mix(self.scale, scale, mix)
            _mix(self.offset, offset, mix)

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        """Stream x (T,) float32 into out (T,) (may be x); a fresh stream starts from silence."""
        m = self.model
        if self._fresh:
            _fill_silence(self.audio, self.rings, m.w, self.scale, self.offset, m.slope, m.res,
                          self._level)
            self._fresh = False
        _run(x, out, self.audio, self.rings, self._pos, m.w0, m.w, m.dilations, self.scale, self.offset,
             self._start, self._ramp, m.slope, m.res, m.w_out, m.b_out, self._tap, self._act)

    def reset(self) -> None:
        """Forget the signal: the next ``run`` starts from the history silence leaves at the
        conditioning in force then."""
        self._pos[0] = 0
        self._ramp[:] = 0
        self._fresh = True
