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
    kind = "statichyper-gru"

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
