"""WAV reading and writing for renders, datasets and the file player.

Runs on the GUI/CLI thread (or a render worker), never on the audio thread.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import tempfile

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly


class AudioFileError(ValueError):
    """An audio file is missing, unreadable, empty or otherwise unusable."""


@dataclasses.dataclass
class Audio:
    """Mono float32 samples with their rate, and what was done to get them."""
    samples: np.ndarray
    sample_rate: int
    notes: list[str] = dataclasses.field(default_factory=list)
    source_rate: int = 0
    subtype: str = ""


def read_mono(path, sample_rate: int | None = None) -> Audio:
    """Read an audio file as mono float32, mixing channels down and resampling if asked.

    Args:
        path: WAV (or any libsndfile format) of 16/24/32-bit int or float samples.
        sample_rate: rate to resample to; None keeps the file's rate.
    Returns:
        Audio whose ``notes`` say what was mixed down or resampled.
    Raises:
        AudioFileError: missing, unreadable, corrupt or empty file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"{path.name} is not a readable audio file ({str(exc).strip() or 'unknown format'})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path.name} holds no samples")
    notes = []
    if data.shape[1] > 1:
        notes.append(f"{path.name}: {data.shape[1]} channels mixed down to mono")
        mono = data.mean(axis=1)
    else:
        mono = data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sample_rate is not None and int(sample_rate) != rate:
        notes.append(f"{path.name}: resampled from {rate} Hz to {sample_rate} Hz")
        mono = resample(mono, rate, int(sample_rate))
    return Audio(mono, int(sample_rate or rate), notes, source_rate=int(rate), subtype=info.subtype)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Offline zero-phase polyphase resampling (Kaiser window), same duration."""
    if rate_in == rate_out:
        return np.asarray(x, np.float32)
    g = math.gcd(int(rate_in), int(rate_out))
    y = resample_poly(np.asarray(x, np.float64), int(rate_out) // g, int(rate_in) // g, window=("kaiser", 8.6))
    return y.astype(np.float32)


def write_float(path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float32 WAV atomically: a temporary file beside the target, then a rename.

    An interrupted or failed write never leaves a partial file under the target name.
    """
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise AudioFileError(f"output folder does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(samples, np.float32), int(sample_rate), subtype="FLOAT", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
