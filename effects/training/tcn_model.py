"""FiLM-conditioned causal micro-TCN in torch for training (spec section 6), exported to the
streaming ``effects.tcn.MicroTCN``. Runs on the training thread.

Same layout and parameter names as [mtcn] TCN-300-C, at any channels, kernel and dilations:
e = ReLU MLP of the knobs; block n: dilated causal conv (no bias), BatchNorm (affine=False),
FiLM [gamma | beta] = Linear(e), PReLU, plus a bias-free 1x1 residual (groups = C_in) on the input
one sample before the conv's newest; output tanh(1x1 conv C -> 1 + bias). A SignalTrain state dict
loads into it unchanged.

``forward`` gives one output per input sample, as if silence came before the input: each block's
input is padded on the left with the value its predecessor settles to in silence (what zeros
before the input would have given), so in eval mode ``forward(x, c)`` equals the streaming model
run from reset. The receptive field is ``1 + (K - 1) * sum(dilations)``; a training config's
``warmup`` should be at least that, so the loss never sees outputs that depend on the silence
assumed before the segment.

[mtcn] C. J. Steinmetz, J. D. Reiss, "Efficient neural networks for real-time modeling of analog
dynamic range compression", AES 2022.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effects.tcn import TCN_FORMAT, MicroTCN

BN_MOMENTUM = 0.1


class FiLM(nn.Module):
    """BatchNorm (affine=False) then gamma * u + beta, [gamma | beta] = adaptor(e)."""

    def __init__(self, channels: int, cond_size: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, affine=False)
        self.adaptor = nn.Linear(cond_size, 2 * channels)


class TCNBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, kernel_size: int, dilation: int, cond_size: int,
                 batchnorm: bool = True):
        super().__init__()
        self.kernel_size, self.dilation, self.batchnorm = kernel_size, dilation, batchnorm
        self.conv1 = nn.Conv1d(in_channels, channels, kernel_size, dilation=dilation, bias=False)
        self.film = FiLM(channels, cond_size)
        with torch.no_grad():
            self.film.adaptor.bias[:channels] = 1.0  # FiLM starts near gamma = 1
            if not batchnorm:  # fixed statistics that make BN the identity: scale = gamma exactly
                self.film.bn.running_var.fill_(1.0 - self.film.bn.eps)
        self.relu = nn.PReLU(channels, init=0.25)
        self.res = nn.Conv1d(in_channels, channels, 1, groups=in_channels, bias=False)

    def forward(self, h: torch.Tensor, silence: torch.Tensor, e: torch.Tensor):
        """h (B, C_in, T) input, silence (B, C_in) the input's value in silence, e (B, E)
        -> output (B, C, T) and its value in silence (B, C)."""
        pad = (self.kernel_size - 1) * self.dilation
        hp = torch.cat([silence.unsqueeze(-1).expand(-1, -1, pad), h], dim=-1)
        u = self.conv1(hp)  # (B, C, T)
        u_silence = torch.einsum("oik,bi->bo", self.conv1.weight, silence)  # the conv of a constant
        bn = self.film.bn
        if self.training and self.batchnorm:
            mean = u.mean(dim=(0, 2))
            var = u.var(dim=(0, 2), unbiased=False)
            with torch.no_grad():
                n = u.shape[0] * u.shape[2]
                bn.running_mean.lerp_(mean, BN_MOMENTUM)
                bn.running_var.lerp_(var * n / max(n - 1, 1), BN_MOMENTUM)
                bn.num_batches_tracked += 1
        else:
            mean, var = bn.running_mean, bn.running_var
        gamma, beta = self.film.adaptor(e).chunk(2, dim=1)  # (B, C) each
        scale = gamma * torch.rsqrt(var + bn.eps)
        offset = beta - scale * mean
        a = F.prelu(scale.unsqueeze(-1) * u + offset.unsqueeze(-1), self.relu.weight)
        a_silence = F.prelu(scale * u_silence + offset, self.relu.weight)
        r = self.res.weight[:, 0, 0]  # (C,): one input channel, or one per channel
        lagged = hp[..., pad - 1:pad - 1 + h.shape[-1]]  # input one sample before the newest
        return a + r[:, None] * lagged, a_silence + r * silence


class FiLMTCN(nn.Module):
    """Causal micro-TCN with FiLM conditioning.

    Args:
        num_conds: N_c knobs (normalised to [-1, 1] by the dataset).
        channels: C per block. kernel_size: K. dilations: one per block.
        cond_sizes: widths of the three ReLU layers of the conditioning MLP (16, 32, 32 in [mtcn]).
        batchnorm: BN with batch statistics in training, as [mtcn]; without it the BN stays the
            identity (mean 0, variance 1 - eps) and the conv output keeps its level, which suits a
            level-dependent device trained in small batches (batch statistics of a few segments
            at random levels are noisy, and the running statistics the stream uses drift with them).
    """

    def __init__(self, num_conds: int = 2, channels: int = 32, kernel_size: int = 13,
                 dilations=(1, 10, 100, 1000), cond_sizes=(16, 32, 32), batchnorm: bool = True):
        super().__init__()
        dilations, cond_sizes = [int(d) for d in dilations], [int(n) for n in cond_sizes]
        if not dilations or min(dilations) < 1:
            raise ValueError("tcn: dilations must be a non-empty list of integers >= 1")
        if kernel_size < 2 or channels < 1 or len(cond_sizes) != 3 or min(cond_sizes) < 1:
            raise ValueError("tcn: needs kernel_size >= 2, channels >= 1 and three cond_sizes >= 1")
        self.num_conds, self.channels, self.kernel_size = num_conds, channels, kernel_size
        self.dilations, self.cond_sizes, self.batchnorm = dilations, cond_sizes, batchnorm
        e1, e2, e3 = cond_sizes
        self.gen = nn.Sequential(nn.Linear(num_conds, e1), nn.ReLU(), nn.Linear(e1, e2), nn.ReLU(),
                                 nn.Linear(e2, e3), nn.ReLU())
        self.blocks = nn.ModuleList([TCNBlock(1 if n == 0 else channels, channels, kernel_size, d, e3, batchnorm)
                                     for n, d in enumerate(dilations)])
        self.output = nn.Conv1d(channels, 1, 1)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, T) audio, c (B, N_c) knobs -> (B, T), silence assumed before x."""
        e = self.gen(c)
        h = x.unsqueeze(1)
        silence = x.new_zeros(x.shape[0], 1)
        for block in self.blocks:
            h, silence = block(h, silence, e)
        return torch.tanh(self.output(h))[:, 0]

    def config(self) -> dict:
        return {"channels": self.channels, "kernel_size": self.kernel_size, "dilations": self.dilations,
                "cond_sizes": self.cond_sizes, "num_conds": self.num_conds, "batchnorm": self.batchnorm,
                "receptive_field": self.receptive_field}

    def numpy_state(self) -> dict:
        return {k: v.detach().cpu().double().numpy() for k, v in self.state_dict().items()
                if not k.endswith("num_batches_tracked")}

    def export(self, path, meta: dict | None = None) -> None:
        """Write a ``knobnet-tcn`` weights file, which ``effects.tcn.MicroTCN.load`` streams."""
        from effects.modelfile import save_npz_model
        save_npz_model(path, TCN_FORMAT, self.numpy_state(), dict(meta or {}, **self.config()))

    def streaming_twin(self) -> MicroTCN:
        """The streaming model (effects.tcn) holding these weights."""
        return MicroTCN(self.numpy_state(), self.dilations, self.config())


TCN_DEFAULTS = {"channels": 32, "kernel_size": 13, "dilations": [1, 10, 100, 1000], "cond_sizes": [16, 32, 32],
                "batchnorm": True}


def build_tcn(m: dict, num_conds: int) -> FiLMTCN:
    """The ``tcn`` model type of ``knobnet train`` (config keys: TCN_DEFAULTS)."""
    return FiLMTCN(num_conds, m["channels"], m["kernel_size"], m["dilations"], m["cond_sizes"], m["batchnorm"])
