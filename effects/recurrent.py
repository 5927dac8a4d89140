"""Conditioned recurrent models, reduced to a plain GRU per knob setting for streaming.

Concat, FiLM and static-hyper conditioning all give GRU weights that are constant while the
knobs stand still ([pnfx], spec section 2), so streaming regenerates the weights only when a
knob moves and otherwise runs ``kernels.gru_run``. ``weights_into`` runs on the audio thread at
control ticks (NumPy with ``out=`` buffers, no allocation of arrays); loading runs on the
GUI/CLI thread.
"""
from __future__ import annotations

import numpy as np

from effects import kernels
from effects.modelfile import read_state_dict, require_keys


class GRUWeights:
    """Preallocated float32 weights of one GRU in row-vector layout (spec section 2.3)."""

    def __init__(self, hidden_size: int):
        h = hidden_size
        self.w_ih = np.zeros(3 * h, np.float32)
        self.w_hh = np.zeros((h, 3 * h), np.float32)
        self.b_ih = np.zeros(3 * h, np.float32)
        self.b_hh = np.zeros(3 * h, np.float32)


class GRUStream:
    """A GRU-H with a linear read-out, streamed sample by sample with carried state."""

    def __init__(self, hidden_size: int, w_out: np.ndarray, b_out: float):
        self.weights = GRUWeights(hidden_size)
        self.w_out = np.ascontiguousarray(w_out, np.float32).reshape(hidden_size)
        self.b_out = np.float32(b_out)
        self.h = np.zeros(hidden_size, np.float32)
        self._g = np.zeros(3 * hidden_size, np.float32)
        self._pre = np.zeros(3 * hidden_size, np.float32)

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        w = self.weights
        kernels.gru_run(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, self.w_out, self.b_out,
                        self.h, self._g, self._pre, out)

    def reset(self) -> None:
        self.h[:] = 0.0


class StaticHyperGRU:
    """[pnfx] StaticHyper-GRU: an MLP of the knobs generates all GRU weights (spec 2.3).

    Trunk: (n_mlp_blocks - 1) x [Linear, LeakyReLU(0.1)]; heads P_ih, P_hh, P_bih, P_bhh map the
    embedding e to W_ih (C_in, 3H), W_hh (H, 3H) row-major, b_ih and b_hh.
    """
    kind = "statichyper"

    def __init__(self, state: dict[str, np.ndarray]):
        self.trunk = []
        i = 0
        while f"cond_mlp.{i}.0.weight" in state:
            self.trunk.append((state[f"cond_mlp.{i}.0.weight"].astype(np.float32),
                               state[f"cond_mlp.{i}.0.bias"].astype(np.float32)))
            i += 1
        self.heads = {name: (state[f"proj_{name}.weight"].astype(np.float32),
                             state[f"proj_{name}.bias"].astype(np.float32))
                      for name in ("ih", "hh", "bih", "bhh")}
        self.w_out = state["linear_out.weight"].astype(np.float32)
        self.b_out = float(state["linear_out.bias"][0])
        self.hidden_size = self.w_out.shape[1]
        self.num_conds = self.trunk[0][0].shape[1]
        self.embedding_size = self.heads["ih"][0].shape[1]
        self._e = [np.zeros(w.shape[0], np.float32) for w, _ in self.trunk]
        self.params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))

    @classmethod
    def load(cls, path, hidden_size: int = 32, num_conds: int = 2, mlp_size: int = 8) -> "StaticHyperGRU":
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

    def stream(self) -> GRUStream:
        return GRUStream(self.hidden_size, self.w_out, self.b_out)

    def embedding(self, cond: np.ndarray) -> np.ndarray:
        """e = trunk(c) for normalised conditions c in [-1, 1] (written into a preallocated buffer)."""
        e = np.asarray(cond, np.float32)
        for (w, b), buf in zip(self.trunk, self._e):
            np.dot(w, e, out=buf)
            buf += b
            np.maximum(buf, np.float32(0.1) * buf, out=buf)  # LeakyReLU(0.1)
            e = buf
        return e

    def weights_into(self, cond: np.ndarray, w: GRUWeights) -> None:
        """Generate the GRU weights for normalised conditions c into w (no allocation)."""
        e = self.embedding(cond)
        for name, dst in (("ih", w.w_ih), ("hh", w.w_hh.reshape(-1)), ("bih", w.b_ih), ("bhh", w.b_hh)):
            p, bias = self.heads[name]
            np.dot(p, e, out=dst)
            dst += bias

    @property
    def ops_per_sample(self) -> int:
        """Flops per sample: 2 per MAC, 30 per sigmoid/tanh (spec section 5)."""
        h = self.hidden_size
        macs = 3 * h + h * 3 * h + h  # input, recurrent, read-out
        elementwise = 3 * h * 3 + h * 4  # bias adds, gate products
        return 2 * macs + elementwise + 30 * 3 * h


def _leaky_mlp(layers, c, bufs):
    """[Linear -> LeakyReLU(0.1)] x n into preallocated buffers; returns the last buffer."""
    e = np.asarray(c, np.float32)
    for (w, b), buf in zip(layers, bufs):
        np.dot(w, e, out=buf)
        buf += b
        np.maximum(buf, np.float32(0.1) * buf, out=buf)
        e = buf
    return e


class ConcatGRU:
    """[pnfx] Concat-GRU: the knobs are extra input channels, c repeated over time (spec 2.1).

    With constant knobs their input weights fold into the input bias: b_ih' = b_ih + W_c c.
    """
    kind = "concat"

    def __init__(self, state: dict[str, np.ndarray]):
        w_ih = state["rnn.weight_ih_l0"].astype(np.float32)
        self.w_x = np.ascontiguousarray(w_ih[:, 0])
        self.w_c = np.ascontiguousarray(w_ih[:, 1:])
        self.w_hh_t = np.ascontiguousarray(state["rnn.weight_hh_l0"].astype(np.float32).T)
        self.b_ih = state["rnn.bias_ih_l0"].astype(np.float32)
        self.b_hh = state["rnn.bias_hh_l0"].astype(np.float32)
        self.w_out = state["linear_out.weight"].astype(np.float32)
        self.b_out = float(state["linear_out.bias"][0])
        self.hidden_size = self.w_hh_t.shape[0]
        self.num_conds = self.w_c.shape[1]
        self.params = sum(v.size for v in state.values())

    def stream(self) -> GRUStream:
        return GRUStream(self.hidden_size, self.w_out, self.b_out)

    def weights_into(self, cond, w: GRUWeights) -> None:
        w.w_ih[:] = self.w_x
        w.w_hh[:] = self.w_hh_t
        np.dot(self.w_c, np.asarray(cond, np.float32), out=w.b_ih)
        w.b_ih += self.b_ih
        w.b_hh[:] = self.b_hh

    ops_per_sample = StaticHyperGRU.ops_per_sample


class FiLMGRU:
    """[pnfx] FiLM-GRU: an MLP of the knobs scales and shifts both pre-activations (spec 2.2).

    i = a_i (W_x x + b_x) + b_i and g = a_h (W_h h + b_h) + beta_h fold, per knob setting, into
    w_ih = a_i W_x, b_ih = a_i b_x + beta_i, w_hh = W_h^T diag(a_h), b_hh = a_h b_h + beta_h.
    """
    kind = "film"

    def __init__(self, state: dict[str, np.ndarray]):
        # gen is an nn.Sequential of Linear, LeakyReLU pairs: Linear layers sit at even indices.
        indices = sorted(int(k.split(".")[1]) for k in state if k.startswith("gen.") and k.endswith(".weight"))
        self.gen = [(state[f"gen.{i}.weight"].astype(np.float32), state[f"gen.{i}.bias"].astype(np.float32))
                    for i in indices]
        self.gen_out = (state["gen_out.weight"].astype(np.float32), state["gen_out.bias"].astype(np.float32))
        self.w_x = state["x2h.weight"].astype(np.float32)[:, 0].copy()
        self.b_x = state["x2h.bias"].astype(np.float32)
        self.w_h_t = np.ascontiguousarray(state["h2h.weight"].astype(np.float32).T)
        self.b_h = state["h2h.bias"].astype(np.float32)
        self.w_out = state["linear_out.weight"].astype(np.float32)
        self.b_out = float(state["linear_out.bias"][0])
        self.hidden_size = self.w_h_t.shape[0]
        self.num_conds = self.gen[0][0].shape[1]
        self._bufs = [np.zeros(w.shape[0], np.float32) for w, _ in self.gen]
        self._film = np.zeros(self.gen_out[0].shape[0], np.float32)
        self.params = sum(v.size for v in state.values())

    def stream(self) -> GRUStream:
        return GRUStream(self.hidden_size, self.w_out, self.b_out)

    def weights_into(self, cond, w: GRUWeights) -> None:
        e = _leaky_mlp(self.gen, cond, self._bufs)
        np.dot(self.gen_out[0], e, out=self._film)
        self._film += self.gen_out[1]
        g = 3 * self.hidden_size
        a_i, b_i, a_h, b_h = (self._film[k * g:(k + 1) * g] for k in range(4))
        np.multiply(a_i, self.w_x, out=w.w_ih)
        np.multiply(a_i, self.b_x, out=w.b_ih)
        w.b_ih += b_i
        np.multiply(self.w_h_t, a_h, out=w.w_hh)
        np.multiply(a_h, self.b_h, out=w.b_hh)
        w.b_hh += b_h

    ops_per_sample = StaticHyperGRU.ops_per_sample


GRU_FORMAT = "knobnet-conditioned-gru"
CONDITIONING = {"concat": ConcatGRU, "film": FiLMGRU, "statichyper": StaticHyperGRU}


def load_conditioned_gru(path, num_conds: int = 2):
    """Load a conditioned GRU: a knobnet weights file (any conditioning) or a pyneuralfx
    StaticHyper-GRU-32 checkpoint. Returns (model, meta)."""
    import zipfile
    from effects.modelfile import load_npz_model
    from effects.pedal import ModelFileError
    import pathlib
    path = pathlib.Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_npz = "format.npy" in z.namelist()
        if is_npz:
            state, meta = load_npz_model(path, GRU_FORMAT, "conditioned GRU")
            cls = CONDITIONING.get(meta.get("conditioning"))
            if cls is None:
                raise ModelFileError(f"{path.name}: unknown conditioning {meta.get('conditioning')!r}")
            try:
                model = cls(state)
            except KeyError as exc:
                raise ModelFileError(f"{path.name}: missing parameter {exc.args[0]}") from None
            if model.num_conds != num_conds:
                raise ModelFileError(f"{path.name} takes {model.num_conds} knobs, this pedal has {num_conds}")
            return model, meta
    return StaticHyperGRU.load(path), {"source": "pyneuralfx StaticHyper-GRU-32 checkpoint"}
