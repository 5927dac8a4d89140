"""Conditioned GRUs in torch for training (spec section 2), exported to the streaming classes
in ``effects.recurrent``. Runs on the training thread.

Every conditioning method is written as a map from knobs c (B, N_c) to per-example GRU weights
``(w_ih, b_ih, w_hh, b_hh)`` in row-vector layout; the recurrence then runs in the compiled
``gru_recurrence``. The streaming side folds the same maps (``weights_into``) at control ticks.
Parameter names follow pyneuralfx where it has them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from effects.recurrent import CONDITIONING, GRU_FORMAT
from effects.training.gru_op import gru_recurrence


def _mlp(n_in: int, width: int, blocks: int) -> nn.Sequential:
    layers = []
    for i in range(blocks):
        layers += [nn.Linear(n_in if i == 0 else width, width), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class ConditionedGRU(nn.Module):
    """GRU-H with a linear read-out and concat / FiLM / static-hyper conditioning.

    Args:
        conditioning: "concat", "film" or "statichyper".
        hidden_size: H.
        num_conds: N_c knobs, normalised to [-1, 1].
        mlp_size, n_mlp_blocks: width and depth of the conditioning MLP (FiLM: n_mlp_blocks layers
            before the output layer; static hyper: n_mlp_blocks - 1 trunk layers, as [pnfx]).
    """

    def __init__(self, conditioning: str = "concat", hidden_size: int = 32, num_conds: int = 2,
                 mlp_size: int = 8, n_mlp_blocks: int = 2):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"unknown conditioning '{conditioning}' (known: {', '.join(CONDITIONING)})")
        self.conditioning, self.hidden_size, self.num_conds = conditioning, hidden_size, num_conds
        self.mlp_size, self.n_mlp_blocks = mlp_size, n_mlp_blocks
        h, g = hidden_size, 3 * hidden_size
        if conditioning == "concat":
            self.rnn = nn.GRU(1 + num_conds, h, batch_first=True)
        elif conditioning == "film":
            self.gen = _mlp(num_conds, mlp_size, n_mlp_blocks)
            self.gen_out = nn.Linear(mlp_size, 4 * g)
            self.x2h = nn.Linear(1, g)
            self.h2h = nn.Linear(h, g)
            bound = 1 / math.sqrt(h)
            for p in (*self.x2h.parameters(), *self.h2h.parameters()):
                nn.init.uniform_(p, -bound, bound)
            with torch.no_grad():  # start as an unconditioned GRU: alpha = 1, beta = 0
                self.gen_out.weight.mul_(0.1)
                self.gen_out.bias.copy_(torch.cat([torch.ones(g), torch.zeros(g), torch.ones(g), torch.zeros(g)]))
        else:
            self.cond_mlp = nn.ModuleList([nn.Sequential(nn.Linear(num_conds if i == 0 else mlp_size, mlp_size),
                                                         nn.LeakyReLU(0.1)) for i in range(n_mlp_blocks - 1)])
            self.proj_ih = nn.Linear(mlp_size, g)
            self.proj_hh = nn.Linear(mlp_size, h * g)
            self.proj_bih = nn.Linear(mlp_size, g)
            self.proj_bhh = nn.Linear(mlp_size, g)
            with torch.no_grad():  # generated weights start at GRU-like scale U(+-1/sqrt(H))
                for proj in (self.proj_ih, self.proj_hh, self.proj_bih, self.proj_bhh):
                    proj.weight.mul_(0.1)
                    proj.bias.uniform_(-1 / math.sqrt(h), 1 / math.sqrt(h))
        self.linear_out = nn.Linear(h, 1)

    def weights(self, c: torch.Tensor):
        """Per-example GRU weights for knobs c (B, N_c): w_ih (B,3H), b_ih (B,3H), w_hh (B,H,3H), b_hh (B,3H)."""
        B, h, g = c.shape[0], self.hidden_size, 3 * self.hidden_size
        if self.conditioning == "concat":
            w = self.rnn.weight_ih_l0
            return (w[:, 0].expand(B, g), self.rnn.bias_ih_l0 + c @ w[:, 1:].T,
                    self.rnn.weight_hh_l0.T.expand(B, h, g), self.rnn.bias_hh_l0.expand(B, g))
        if self.conditioning == "film":
            film = self.gen_out(self.gen(c))
            a_i, b_i, a_h, b_h = film.split(g, dim=1)
            return (a_i * self.x2h.weight[:, 0], a_i * self.x2h.bias + b_i,
                    self.h2h.weight.T.unsqueeze(0) * a_h.unsqueeze(1), a_h * self.h2h.bias + b_h)
        e = c
        for layer in self.cond_mlp:
            e = layer(e)
        return self.proj_ih(e), self.proj_bih(e), self.proj_hh(e).view(B, h, g), self.proj_bhh(e)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, T) audio, c (B, N_c) knobs in [-1, 1] -> (B, T)."""
        w_ih, b_ih, w_hh, b_hh = self.weights(c)
        xi = x.unsqueeze(-1) * w_ih.unsqueeze(1) + b_ih.unsqueeze(1)
        hs = gru_recurrence(xi, w_hh.contiguous(), b_hh.contiguous())
        return (hs @ self.linear_out.weight[0]) + self.linear_out.bias[0]

    def config(self) -> dict:
        return {"conditioning": self.conditioning, "hidden_size": self.hidden_size, "num_conds": self.num_conds,
                "mlp_size": self.mlp_size, "n_mlp_blocks": self.n_mlp_blocks}

    def export(self, path, meta: dict | None = None) -> None:
        """Write the weights in the format ``effects.recurrent.load_conditioned_gru`` streams."""
        from effects.modelfile import save_npz_model
        state = {}
        for k, v in self.state_dict().items():
            # nn.Sequential inside ModuleList names trunk layers cond_mlp.i.0.*, as [pnfx].
            state[k] = v.detach().cpu().numpy()
        save_npz_model(path, GRU_FORMAT, state, dict(meta or {}, **self.config()))

    def streaming_twin(self):
        """The streaming model (effects.recurrent) holding these weights."""
        state = {k: v.detach().cpu().double().numpy() for k, v in self.state_dict().items()}
        return CONDITIONING[self.conditioning](state)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
