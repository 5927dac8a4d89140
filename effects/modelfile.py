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


def save_npz_model(path, model_format: str, arrays: dict, meta: dict) -> None:
    """Write a knobnet weights file: float32 arrays, a ``format`` tag and JSON ``meta``.

    Written beside the target and renamed, so an interrupted save never leaves half a file.
    """
    import json
    import os
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, format=np.array(model_format), meta=np.array(json.dumps(meta)),
                            **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    os.replace(tmp, path)


def load_npz_model(path, model_format: str, what: str,
                   retired: dict[str, str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a knobnet weights file of the given format; ModelFileError (one line) for anything else.

    ``retired`` maps format tags of earlier knobnet versions of this model to why such a file
    cannot be played any more (the error then says that, and to train it again).
    """
    import json
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path.name} is not a knobnet {what} weights file (expected an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ModelFileError(f"{path.name} could not be read as an .npz archive ({type(exc).__name__})") from None
    if "format" not in data or "meta" not in data:
        raise ModelFileError(f"{path.name} is not a knobnet {what} weights file (no format tag)")
    tag = str(data.pop("format"))
    try:
        meta = json.loads(str(data.pop("meta")))
    except ValueError:
        raise ModelFileError(f"{path.name}: metadata is unreadable") from None
    if tag in (retired or {}):
        raise ModelFileError(f"{path.name} was written by an earlier knobnet ({retired[tag]}): train it again (knobnet train)")
    if tag != model_format:
        raise ModelFileError(f"{path.name} is a '{tag}' file, not a knobnet {what} weights file")
    for k, v in data.items():
        if not np.all(np.isfinite(v)):
            raise ModelFileError(f"{path.name}: {k} holds NaN or infinite values")
    return {k: v.astype(np.float64) for k, v in data.items()}, meta
