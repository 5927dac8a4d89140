"""Reading model files from disk: PyTorch checkpoints into plain NumPy state dicts.

Runs on the GUI/CLI thread at load time, never on the audio thread.
"""
from __future__ import annotations

import pathlib
import warnings
import zipfile

import numpy as np

from effects.pedal import ModelFileError

SHARED_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
RESOURCES_DIR = pathlib.Path(__file__).resolve().parents[1] / "resources"


def shared_path(*parts: str) -> pathlib.Path:
    """A path inside ../shared (development data and third-party models)."""
    return SHARED_DIR.joinpath(*parts)


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (plain ``torch.save`` of tensors, or a TorchScript archive).

    Returns float arrays keyed by parameter name. Raises ModelFileError with a one-line
    reason if the file is missing, empty, not a PyTorch archive, or holds no tensors.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file is empty: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path.name} is not a PyTorch checkpoint (expected a .pt zip archive)")
    import torch  # deferred: only loading model files needs it

    with zipfile.ZipFile(path) as z:
        scripted = any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    try:
        if scripted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the reader of these files
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt archives
        raise ModelFileError(f"{path.name} could not be read as a PyTorch checkpoint: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(hasattr(v, "detach") for v in obj.values()):
        raise ModelFileError(f"{path.name} holds no state dict of tensors")
    return {k: v.detach().cpu().double().numpy() for k, v in obj.items()}


def require_keys(state: dict, shapes: dict[str, tuple], what: str, path) -> None:
    """Raise ModelFileError unless state holds every key with its expected shape."""
    missing = [k for k in shapes if k not in state]
    if missing:
        raise ModelFileError(f"{pathlib.Path(path).name} is not a {what} model file "
                             f"(missing {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})")
    for k, shape in shapes.items():
        if tuple(state[k].shape) != tuple(shape):
            raise ModelFileError(f"{pathlib.Path(path).name}: {k} has shape {tuple(state[k].shape)}, "
                                 f"a {what} needs {tuple(shape)}")
