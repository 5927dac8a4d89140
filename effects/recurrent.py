"""Conditioned recurrent models (GRU or LSTM cells) streamed sample by sample.

Concat, FiLM and static-hyper conditioning all give cell weights that are constant while the
knobs stand still ([pnfx], spec section 2), so streaming regenerates the weights only when a
knob moves and otherwise runs ``kernels.gru_run`` or ``kernels.lstm_run``. Dynamic hyper (spec
2.4) re-modulates the cell every sample from a small hyper RNN: only the knobs' share of the hyper
cell's input folds at knob moves, and ``kernels.dynamic_hyper_run`` does the rest.
``weights_into`` runs on the audio thread at control ticks (NumPy with ``out=`` buffers, no
allocation of arrays); loading runs on the GUI/CLI thread.
"""
from __future__ import annotations

import numpy as np

from effects import kernels
from effects.modelfile import read_state_dict, require_keys
from effects.rest import IdleState

GATES = {"gru": 3, "lstm": 4}  # gate order r, z, n / i, f, g, o (spec section 1.1)


class RNNWeights:
    """Preallocated float32 weights of one GRU (3 gates) or LSTM (4 gates), row-vector layout (spec 2.3)."""

    def __init__(self, hidden_size: int, gates: int = 3):
        g = gates * hidden_size
        self.w_ih = np.zeros(g, np.float32)
        self.w_hh = np.zeros((hidden_size, g), np.float32)
        self.b_ih = np.zeros(g, np.float32)
        self.b_hh = np.zeros(g, np.float32)


GRUWeights = RNNWeights  # the 3-gate default


class GRUStream(IdleState):
    """A GRU-H with a linear read-out, streamed sample by sample with carried state (``IdleState``:
    ``settle`` once its weights are in)."""
    state_names = ("h",)

    def __init__(self, hidden_size: int, w_out: np.ndarray, b_out: float):
        self.weights = RNNWeights(hidden_size, 3)
        self.w_out = np.ascontiguousarray(w_out, np.float32).reshape(hidden_size)
        self.b_out = np.float32(b_out)
        self.h = np.zeros(hidden_size, np.float32)
        self._g = np.zeros(3 * hidden_size, np.float32)
        self._pre = np.zeros(3 * hidden_size, np.float32)
        self._keep_idle()

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        w = self.weights
        kernels.gru_run(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, self.w_out, self.b_out,
                        self.h, self._g, self._pre, out)


class LSTMStream(IdleState):
    """An LSTM-H with a linear read-out, streamed sample by sample with carried state (``IdleState``)."""
    state_names = ("h", "c")

    def __init__(self, hidden_size: int, w_out: np.ndarray, b_out: float):
        self.weights = RNNWeights(hidden_size, 4)
        self.w_out = np.ascontiguousarray(w_out, np.float32).reshape(hidden_size)
        self.b_out = np.float32(b_out)
        self.h = np.zeros(hidden_size, np.float32)
        self.c = np.zeros(hidden_size, np.float32)
        self._pre = np.zeros(4 * hidden_size, np.float32)
        self._keep_idle()

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        w = self.weights
        kernels.lstm_run(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, self.w_out, self.b_out, self.h, self.c, self._pre, out)


class _FoldedRNN:
    """Base of the conditionings that fold, per knob setting, into one plain cell's weights."""
    kind = ""

    def _read_out(self, state, cell: str) -> None:
        self.cell, self.gates = cell, GATES[cell]
        self.w_out = state["linear_out.weight"].astype(np.float32)
        self.b_out = float(state["linear_out.bias"][0])
        self.hidden_size = self.w_out.shape[1]
        self.params = sum(v.size for v in state.values())

    def stream(self):
        return (GRUStream if self.cell == "gru" else LSTMStream)(self.hidden_size, self.w_out, self.b_out)

    @property
    def ops_per_sample(self) -> int:
        """Flops per sample: 2 per MAC, 30 per sigmoid/tanh (spec section 5)."""
        h, g = self.hidden_size, self.gates * self.hidden_size
        macs = g + h * g + h  # input, recurrent, read-out
        elementwise = 3 * g + 4 * h  # bias adds, gate products
        return 2 * macs + elementwise + 30 * (g + h * (self.gates - 3))  # LSTM: tanh(c) too


def _leaky_mlp(layers, c, bufs):
    """[Linear -> LeakyReLU(0.1)] x n into preallocated buffers; returns the last buffer."""
    e = np.asarray(c, np.float32)
    for (w, b), buf in zip(layers, bufs):
        np.dot(w, e, out=buf)
        buf += b
        kernels.leaky_relu(buf, np.float32(0.1))
        e = buf
    return e


class StaticHyperRNN(_FoldedRNN):
    """[pnfx] StaticHyper-GRU/LSTM: an MLP of the knobs generates all cell weights (spec 2.3).

    Trunk: (n_mlp_blocks - 1) x [Linear, LeakyReLU(0.1)]; heads P_ih, P_hh, P_bih, P_bhh map the
    embedding e to W_ih (C_in, GH), W_hh (H, GH) row-major, b_ih and b_hh.
    """
    kind = "statichyper"

    def __init__(self, state: dict[str, np.ndarray], cell: str = "gru"):
        self._read_out(state, cell)
        self.trunk = []
        i = 0
        while f"cond_mlp.{i}.0.weight" in state:
            self.trunk.append((state[f"cond_mlp.{i}.0.weight"].astype(np.float32),
                               state[f"cond_mlp.{i}.0.bias"].astype(np.float32)))
            i += 1
        self.heads = {name: (state[f"proj_{name}.weight"].astype(np.float32),
                             state[f"proj_{name}.bias"].astype(np.float32))
                      for name in ("ih", "hh", "bih", "bhh")}
        self.num_conds = self.trunk[0][0].shape[1]
        self.embedding_size = self.heads["ih"][0].shape[1]
        self._e = [np.zeros(w.shape[0], np.float32) for w, _ in self.trunk]

    @classmethod
    def load(cls, path, hidden_size: int = 32, num_conds: int = 2, mlp_size: int = 8) -> "StaticHyperRNN":
        """Load a pyneuralfx StaticHyper-GRU checkpoint (spec section 5 layout)."""
        state = read_state_dict(path)
        g = 3 * hidden_size
        require_keys(state, {
            "linear_out.weight": (1, hidden_size), "linear_out.bias": (1,),
            "cond_mlp.0.0.weight": (mlp_size, num_conds), "cond_mlp.0.0.bias": (mlp_size,),
            "proj_ih.weight": (g, mlp_size), "proj_ih.bias": (g,),
            "proj_hh.weight": (hidden_size * g, mlp_size), "proj_hh.bias": (hidden_size * g,),
            "proj_bih.weight": (g, mlp_size), "proj_bih.bias": (g,),
            "proj_bhh.weight": (g, mlp_size), "proj_bhh.bias": (g,),
        }, f"StaticHyper-GRU-{hidden_size}", path)
        return cls(state)

    def embedding(self, cond: np.ndarray) -> np.ndarray:
        """e = trunk(c) for normalised conditions c in [-1, 1] (written into a preallocated buffer)."""
        return _leaky_mlp(self.trunk, cond, self._e)

    def weights_into(self, cond: np.ndarray, w: RNNWeights) -> None:
        """Generate the cell weights for normalised conditions c into w (no allocation)."""
        e = self.embedding(cond)
        for name, dst in (("ih", w.w_ih), ("hh", w.w_hh.reshape(-1)), ("bih", w.b_ih), ("bhh", w.b_hh)):
            p, bias = self.heads[name]
            np.dot(p, e, out=dst)
            dst += bias


class ConcatRNN(_FoldedRNN):
    """[pnfx] Concat-GRU/LSTM: the knobs are extra input channels, c repeated over time (spec 2.1).

    With constant knobs their input weights fold into the input bias: b_ih' = b_ih + W_c c.
    """
    kind = "concat"

    def __init__(self, state: dict[str, np.ndarray], cell: str = "gru"):
        self._read_out(state, cell)
        w_ih = state["rnn.weight_ih_l0"].astype(np.float32)
        self.w_x = np.ascontiguousarray(w_ih[:, 0])
        self.w_c = np.ascontiguousarray(w_ih[:, 1:])
        self.w_hh_t = np.ascontiguousarray(state["rnn.weight_hh_l0"].astype(np.float32).T)
        self.b_ih = state["rnn.bias_ih_l0"].astype(np.float32)
        self.b_hh = state["rnn.bias_hh_l0"].astype(np.float32)
        self.num_conds = self.w_c.shape[1]

    def weights_into(self, cond, w: RNNWeights) -> None:
        w.w_ih[:] = self.w_x
        w.w_hh[:] = self.w_hh_t
        np.dot(self.w_c, np.asarray(cond, np.float32), out=w.b_ih)
        w.b_ih += self.b_ih
        w.b_hh[:] = self.b_hh


class FiLMRNN(_FoldedRNN):
    """[pnfx] FiLM-GRU/LSTM: an MLP of the knobs scales and shifts both pre-activations (spec 2.2).

    i = a_i (W_x x + b_x) + b_i and g = a_h (W_h h + b_h) + beta_h fold, per knob setting, into
    w_ih = a_i W_x, b_ih = a_i b_x + beta_i, w_hh = W_h^T diag(a_h), b_hh = a_h b_h + beta_h.
    """
    kind = "film"

    def __init__(self, state: dict[str, np.ndarray], cell: str = "gru"):
        self._read_out(state, cell)
        # gen is an nn.Sequential of Linear, LeakyReLU pairs: Linear layers sit at even indices.
        indices = sorted(int(k.split(".")[1]) for k in state if k.startswith("gen.") and k.endswith(".weight"))
        self.gen = [(state[f"gen.{i}.weight"].astype(np.float32), state[f"gen.{i}.bias"].astype(np.float32))
                    for i in indices]
        self.gen_out = (state["gen_out.weight"].astype(np.float32), state["gen_out.bias"].astype(np.float32))
        self.w_x = state["x2h.weight"].astype(np.float32)[:, 0].copy()
        self.b_x = state["x2h.bias"].astype(np.float32)
        self.w_h_t = np.ascontiguousarray(state["h2h.weight"].astype(np.float32).T)
        self.b_h = state["h2h.bias"].astype(np.float32)
        self.num_conds = self.gen[0][0].shape[1]
        self._bufs = [np.zeros(w.shape[0], np.float32) for w, _ in self.gen]
        self._film = np.zeros(self.gen_out[0].shape[0], np.float32)
        g = self.gates * self.hidden_size
        self._a_i, self._b_i, self._a_h, self._b_h = (self._film[k * g:(k + 1) * g] for k in range(4))

    def weights_into(self, cond, w: RNNWeights) -> None:
        e = _leaky_mlp(self.gen, cond, self._bufs)
        np.dot(self.gen_out[0], e, out=self._film)
        self._film += self.gen_out[1]
        np.multiply(self._a_i, self.w_x, out=w.w_ih)
        np.multiply(self._a_i, self.b_x, out=w.b_ih)
        w.b_ih += self._b_i
        kernels.scale_columns(self.w_h_t, self._a_h, w.w_hh)
        np.multiply(self._a_h, self.b_h, out=w.b_hh)
        w.b_hh += self._b_h


class HyperBias:
    """What a knob setting changes in a dynamic-hyper model: the hyper cell's input bias (GK,)."""

    def __init__(self, size: int):
        self.hyper_bias = np.zeros(size, np.float32)


def block_diag(*blocks) -> np.ndarray:
    """Block-diagonal matrix of 2-D blocks (NumPy's missing ``torch.block_diag``)."""
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), blocks[0].dtype)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def fold_dynamic_hyper(p: dict, gates: int, diag=block_diag, cat=np.concatenate):
    """The dynamic-hyper weights in the layout of ``kernels.dynamic_hyper_run`` (spec 2.4).

    The per-gate maps z_* = Z_* h^ + z_bias, d_*^k = D_*^k z_*^k (+ e^k for d_b) are linear in the
    hyper state h^, so they fold into [d_h | d_x | d_b] = h^ A + a. p holds NumPy arrays, or torch
    tensors with diag = torch.block_diag and cat = torch.cat (the training model, differentiably).
    Returns (wh, b_x, w_c, whh, bhh, A, a, U, v): hyper input weights on h (H, GK), hyper input
    bias (GK), hyper input weights on the knobs (GK, N_c), hyper recurrent weights (K, GK) and
    bias (GK), A (K, 3GH), a (3GH), main recurrent U (H, GH) and input v (GH) weights.
    """
    G = range(gates)
    H = p["w_h.0"].shape[0]
    d_h, d_x, d_b = (diag(*[p[f"d_{n}.{k}.weight"] for k in G]) for n in "hxb")  # (GH, G N_z)
    A = cat([d_h @ p["z_h.weight"], d_x @ p["z_x.weight"], d_b @ p["z_b.weight"]], 0).T
    a = cat([d_h @ p["z_h.bias"], d_x @ p["z_x.bias"], cat([p[f"d_b.{k}.bias"] for k in G], 0)], 0)
    U = cat([p[f"w_h.{k}"].T for k in G], 1)
    v = cat([p[f"w_x.{k}"][:, 0] for k in G], 0)
    x2h = p["hyper_rnn.x2h.weight"]
    return (x2h[:, :H].T, p["hyper_rnn.x2h.bias"], x2h[:, H:], p["hyper_rnn.h2h.weight"].T,
            p["hyper_rnn.h2h.bias"], A, a, U, v)


class DynamicHyperRNN:
    """[pnfx] DynamicHyper-GRU/LSTM: a hyper RNN of [h_{t-1}; knobs] modulates the main cell every
    sample (spec 2.4), with the main input weights V of shape (H, C_in) (spec's note on the quirk)."""
    kind = "dynamichyper"

    def __init__(self, state: dict[str, np.ndarray], cell: str = "gru"):
        self.cell, self.gates = cell, GATES[cell]
        f32 = {k: v.astype(np.float32) for k, v in state.items()}
        folded = fold_dynamic_hyper(f32, self.gates)
        (self.wh, self.b_x, self.w_c, self.whh, self.bhh, self.A, self.a, self.U, self.v) = (
            np.ascontiguousarray(m, np.float32) for m in folded)
        self.w_out = f32["linear_out.weight"].reshape(-1).copy()
        self.b_out = np.float32(f32["linear_out.bias"][0])
        self.hidden_size, self.hyper_size = self.U.shape[0], self.whh.shape[0]
        self.num_conds = self.w_c.shape[1]
        self.params = sum(v.size for v in state.values())

    def stream(self) -> "DynamicHyperStream":
        return DynamicHyperStream(self)

    def weights_into(self, cond, w: HyperBias) -> None:
        np.dot(self.w_c, np.asarray(cond, np.float32), out=w.hyper_bias)
        w.hyper_bias += self.b_x

    @property
    def ops_per_sample(self) -> int:
        """Flops per sample: 2 per MAC, 30 per sigmoid/tanh (spec section 5)."""
        h, k, G = self.hidden_size, self.hyper_size, self.gates
        lstm_tanh = G - 3  # LSTM: tanh(c) too
        hyper = 2 * (h + k) * G * k + 2 * G * k + 30 * (G + lstm_tanh) * k
        modulation = 2 * k * 3 * G * h + 3 * G * h
        main = 2 * (h * G * h + G * h + h) + 4 * G * h + 30 * (G + lstm_tanh) * h
        return hyper + modulation + main


class DynamicHyperStream(IdleState):
    """Streams a DynamicHyperRNN: fixed weights shared with the model, state and scratch of its own
    (``IdleState``)."""
    state_names = ("h", "c", "hh", "hc")

    def __init__(self, model: DynamicHyperRNN):
        self.model = model
        h, k, G = model.hidden_size, model.hyper_size, model.gates
        self.weights = HyperBias(G * k)
        self.h, self.c = np.zeros(h, np.float32), np.zeros(h, np.float32)
        self.hh, self.hc = np.zeros(k, np.float32), np.zeros(k, np.float32)
        self._ih, self._gh = np.zeros(G * k, np.float32), np.zeros(G * k, np.float32)
        self._d = np.zeros(3 * G * h, np.float32)
        self._u, self._pre = np.zeros(G * h, np.float32), np.zeros(G * h, np.float32)
        self._keep_idle()

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        m = self.model
        kernels.dynamic_hyper_run(m.cell == "lstm", x, self.weights.hyper_bias, m.wh, m.whh, m.bhh, m.A, m.a,
                                  m.U, m.v, m.w_out, m.b_out, self.h, self.c, self.hh, self.hc,
                                  self._ih, self._gh, self._d, self._u, self._pre, out)


FORMATS = {"gru": "knobnet-conditioned-gru", "lstm": "knobnet-conditioned-lstm"}
CONDITIONING = {"concat": ConcatRNN, "film": FiLMRNN, "statichyper": StaticHyperRNN,
                "dynamichyper": DynamicHyperRNN}


def load_conditioned_gru(path, num_conds: int = 2):
    """Load a conditioned recurrent model: a knobnet weights file (GRU or LSTM cells, any
    conditioning) or a pyneuralfx StaticHyper-GRU-32 checkpoint. Returns (model, meta)."""
    import pathlib
    import zipfile
    from effects.modelfile import load_npz_model
    from effects.pedal import ModelFileError
    path = pathlib.Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_npz = "format.npy" in z.namelist()
        if is_npz:
            with np.load(path, allow_pickle=False) as z:
                tag = str(z["format"])
            cell = next((c for c, f in FORMATS.items() if f == tag), "gru")
            state, meta = load_npz_model(path, FORMATS[cell], "conditioned GRU/LSTM")
            cls = CONDITIONING.get(meta.get("conditioning"))
            if cls is None:
                raise ModelFileError(f"{path.name}: unknown conditioning {meta.get('conditioning')!r}")
            try:
                model = cls(state, cell)
            except KeyError as exc:
                raise ModelFileError(f"{path.name}: missing parameter {exc.args[0]}") from None
            if model.num_conds != num_conds:
                raise ModelFileError(f"{path.name} takes {model.num_conds} knobs, this pedal has {num_conds}")
            return model, meta
    return StaticHyperRNN.load(path), {"source": "pyneuralfx StaticHyper-GRU-32 checkpoint"}
