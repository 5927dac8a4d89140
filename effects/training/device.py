"""Where training runs: the torch device, and moving tensors to and from the compiled CPU ops.

Runs on the training thread. A run uses a CUDA GPU when there is one (``train.device: auto``):
the model's torch parts (convolutions, MLPs, frequency-sampled filters, losses) run there. The
per-sample recurrences (GRU, LSTM, dynamic hyper, GRU1) stay compiled numba loops on the CPU cores,
called with host copies of their inputs: a recurrence is thousands of tiny dependent steps, which a
GPU runs one kernel launch (~10 us) at a time, slower than the compiled loop on one core.
"""
from __future__ import annotations

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a ValueError."""
    if name not in DEVICES:
        raise ValueError(f"device '{name}' is not one of: {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    return torch.device(name)


def host(t: torch.Tensor, dtype=None) -> np.ndarray:
    """A contiguous NumPy array of t's values (copied from the GPU when t lives there)."""
    a = t.detach().cpu().contiguous().numpy()
    return a if dtype is None else a.astype(dtype, copy=False)


def device_tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """NumPy result a as a tensor of dtype on device (no copy on the CPU when the dtype matches).

    The autograd functions keep (device, dtype) of their inputs on ``ctx``, not the inputs."""
    return torch.from_numpy(a).to(device=device, dtype=dtype)
