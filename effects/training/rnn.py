"""Conditioned GRUs and LSTMs in torch for training (spec section 2), exported to the streaming
classes in ``effects.recurrent``. Runs on the training thread.

Concat, FiLM and static hyper are written as maps from knobs c (B, N_c) to per-example cell weights
``(w_ih, b_ih, w_hh, b_hh)`` in row-vector layout; the recurrence then runs in the compiled
``gru_recurrence`` / ``lstm_recurrence``, and the streaming side folds the same maps
(``weights_into``) at control ticks. Dynamic hyper re-modulates the cell every sample from a hyper
RNN; its maps fold (``effects.recurrent.fold_dynamic_hyper``, shared with streaming) into the
compiled ``dynamic_hyper_recurrence``. Parameter names follow pyneuralfx where it has them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from effects.recurrent import CONDITIONING, FORMATS, GATES, fold_dynamic_hyper
from effects.training.gru_op import dynamic_hyper_recurrence, gru_recurrence
from effects.training.lstm_op import lstm_recurrence

# Config keys of the ``gru`` and ``lstm`` model types (effects.training.train.MODEL_TYPES).
RNN_DEFAULTS = {"conditioning": "concat", "hidden_size": 32, "mlp_size": 8, "n_mlp_blocks": 2,
                "hyper_size": 8, "n_z": 8}


def _mlp(n_in: int, width: int, blocks: int) -> nn.Sequential:
    layers = []
    for i in range(blocks):
        layers += [nn.Linear(n_in if i == 0 else width, width), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class _HyperCell(nn.Module):
    """The hyper RNN's learnable cell ([pnfx] LearnableCell): pre-activations x2h(x) and h2h(h)."""

    def __init__(self, n_in: int, hidden_size: int, gates: int):
        super().__init__()
        self.x2h = nn.Linear(n_in, gates * hidden_size)
        self.h2h = nn.Linear(hidden_size, gates * hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))


class ConditionedRNN(nn.Module):
    """GRU-H or LSTM-H with a linear read-out and concat / FiLM / static / dynamic hyper conditioning.

    Args:
        conditioning: "concat", "film", "statichyper" or "dynamichyper".
        hidden_size: H.
        num_conds: N_c knobs, normalised to [-1, 1].
        mlp_size, n_mlp_blocks: width and depth of the conditioning MLP (FiLM: n_mlp_blocks layers
            before the output layer; static hyper: n_mlp_blocks - 1 trunk layers, as [pnfx]).
        cell: "gru" or "lstm".
        hyper_size, n_z: dynamic hyper: the hyper RNN's hidden size K and the per-gate embedding size.
    """

    def __init__(self, conditioning: str = "concat", hidden_size: int = 32, num_conds: int = 2,
                 mlp_size: int = 8, n_mlp_blocks: int = 2, cell: str = "gru", hyper_size: int = 8, n_z: int = 8):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"unknown conditioning '{conditioning}' (known: {', '.join(CONDITIONING)})")
        if cell not in GATES:
            raise ValueError(f"unknown cell '{cell}' (known: {', '.join(GATES)})")
        self.conditioning, self.cell, self.hidden_size, self.num_conds = conditioning, cell, hidden_size, num_conds
        self.mlp_size, self.n_mlp_blocks, self.hyper_size, self.n_z = mlp_size, n_mlp_blocks, hyper_size, n_z
        self.gates = GATES[cell]
        h, g = hidden_size, self.gates * hidden_size
        if conditioning == "concat":
            self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(1 + num_conds, h, batch_first=True)
        elif conditioning == "film":
            self.gen = _mlp(num_conds, mlp_size, n_mlp_blocks)
            self.gen_out = nn.Linear(mlp_size, 4 * g)
            self.x2h = nn.Linear(1, g)
            self.h2h = nn.Linear(h, g)
            bound = 1 / math.sqrt(h)
            for p in (*self.x2h.parameters(), *self.h2h.parameters()):
                nn.init.uniform_(p, -bound, bound)
            with torch.no_grad():  # start as an unconditioned cell: alpha = 1, beta = 0
                self.gen_out.weight.mul_(0.1)
                self.gen_out.bias.copy_(torch.cat([torch.ones(g), torch.zeros(g), torch.ones(g), torch.zeros(g)]))
        elif conditioning == "statichyper":
            self.cond_mlp = nn.ModuleList([nn.Sequential(nn.Linear(num_conds if i == 0 else mlp_size, mlp_size),
                                                         nn.LeakyReLU(0.1)) for i in range(n_mlp_blocks - 1)])
            self.proj_ih = nn.Linear(mlp_size, g)
            self.proj_hh = nn.Linear(mlp_size, h * g)
            self.proj_bih = nn.Linear(mlp_size, g)
            self.proj_bhh = nn.Linear(mlp_size, g)
            with torch.no_grad():  # generated weights start at cell-like scale U(+-1/sqrt(H))
                for proj in (self.proj_ih, self.proj_hh, self.proj_bih, self.proj_bhh):
                    proj.weight.mul_(0.1)
                    proj.bias.uniform_(-1 / math.sqrt(h), 1 / math.sqrt(h))
        else:  # dynamichyper, spec 2.4 (V is (H, C_in), not the checkpoint quirk (H, N_c))
            gz = self.gates * n_z
            self.hyper_rnn = _HyperCell(h + num_conds, hyper_size, self.gates)  # input [h_{t-1}; c]
            self.z_h = nn.Linear(hyper_size, gz)
            self.z_x = nn.Linear(hyper_size, gz)
            self.z_b = nn.Linear(hyper_size, gz, bias=False)
            self.d_h = nn.ModuleList([nn.Linear(n_z, h, bias=False) for _ in range(self.gates)])
            self.d_x = nn.ModuleList([nn.Linear(n_z, h, bias=False) for _ in range(self.gates)])
            self.d_b = nn.ModuleList([nn.Linear(n_z, h) for _ in range(self.gates)])
            self.w_h = nn.ParameterList([nn.Parameter(torch.randn(h, h)) for _ in range(self.gates)])
            self.w_x = nn.ParameterList([nn.Parameter(torch.randn(h, 1)) for _ in range(self.gates)])
        self.linear_out = nn.Linear(h, 1)

    def weights(self, c: torch.Tensor):
        """Per-example cell weights for knobs c (B, N_c): w_ih (B,GH), b_ih (B,GH), w_hh (B,H,GH), b_hh (B,GH).

        Not for dynamic hyper, whose weights change every sample."""
        B, h, g = c.shape[0], self.hidden_size, self.gates * self.hidden_size
        if self.conditioning == "concat":
            w = self.rnn.weight_ih_l0
            return (w[:, 0].expand(B, g), self.rnn.bias_ih_l0 + c @ w[:, 1:].T,
                    self.rnn.weight_hh_l0.T.expand(B, h, g), self.rnn.bias_hh_l0.expand(B, g))
        if self.conditioning == "film":
            film = self.gen_out(self.gen(c))
            a_i, b_i, a_h, b_h = film.split(g, dim=1)
            return (a_i * self.x2h.weight[:, 0], a_i * self.x2h.bias + b_i,
                    self.h2h.weight.T.unsqueeze(0) * a_h.unsqueeze(1), a_h * self.h2h.bias + b_h)
        if self.conditioning == "statichyper":
            e = c
            for layer in self.cond_mlp:
                e = layer(e)
            return self.proj_ih(e), self.proj_bih(e), self.proj_hh(e).view(B, h, g), self.proj_bhh(e)
        raise ValueError("dynamic hyper has no per-knob weights")

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, T) audio, c (B, N_c) knobs in [-1, 1] -> (B, T)."""
        if self.conditioning == "dynamichyper":
            wh, b_x, w_c, whh, bhh, A, a, U, v = fold_dynamic_hyper(dict(self.named_parameters()), self.gates,
                                                                    torch.block_diag, torch.cat)
            hs = dynamic_hyper_recurrence(self.cell == "lstm", x, b_x + c @ w_c.T, wh, whh, bhh, A, a, U, v)
        else:
            w_ih, b_ih, w_hh, b_hh = self.weights(c)
            xi = x.unsqueeze(-1) * w_ih.unsqueeze(1) + b_ih.unsqueeze(1)
            recurrence = gru_recurrence if self.cell == "gru" else lstm_recurrence
            hs = recurrence(xi, w_hh.contiguous(), b_hh.contiguous())
        return (hs @ self.linear_out.weight[0]) + self.linear_out.bias[0]

    def config(self) -> dict:
        return {"cell": self.cell, "conditioning": self.conditioning, "hidden_size": self.hidden_size,
                "num_conds": self.num_conds, "mlp_size": self.mlp_size, "n_mlp_blocks": self.n_mlp_blocks,
                "hyper_size": self.hyper_size, "n_z": self.n_z}

    def _state(self):
        # nn.Sequential inside ModuleList names trunk layers cond_mlp.i.0.*, as [pnfx].
        return {k: v.detach().cpu().double().numpy() for k, v in self.state_dict().items()}

    def export(self, path, meta: dict | None = None) -> None:
        """Write the weights in the format ``effects.recurrent.load_conditioned_gru`` streams."""
        from effects.modelfile import save_npz_model
        save_npz_model(path, FORMATS[self.cell], self._state(), dict(meta or {}, **self.config()))

    def streaming_twin(self):
        """The streaming model (effects.recurrent) holding these weights."""
        return CONDITIONING[self.conditioning](self._state(), self.cell)


ConditionedGRU = ConditionedRNN  # cell="gru" is the default


def rnn_builder(cell: str):
    """``build(model_cfg, num_conds)`` of the ``gru`` / ``lstm`` model types (keys: RNN_DEFAULTS)."""
    def build(m: dict, num_conds: int) -> ConditionedRNN:
        return ConditionedRNN(m["conditioning"], m["hidden_size"], num_conds, m["mlp_size"], m["n_mlp_blocks"],
                              cell, m["hyper_size"], m["n_z"])
    return build


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
