"""Offline rendering of audio through a chain, with latency compensation.

Runs on the CLI thread or a GUI render worker, never on the audio thread.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from effects.audio_io import read_mono, resample, write_float
from effects.pedal import Chain


def render(chain: Chain, x: np.ndarray, block_size: int = 4096,
           progress: Callable[[int, int, float], None] | None = None) -> np.ndarray:
    """Run x (at chain.sample_rate) through the chain from a reset state, block by block.

    The chain's latency is compensated: the output is aligned with the input and as long.

    Args:
        progress: called as progress(samples_done, samples_total, seconds_elapsed) after each block.
    """
    if block_size < 1:
        raise ValueError(f"block size must be at least 1, got {block_size}")
    chain.reset()
    latency = chain.latency_samples
    padded = np.concatenate([np.asarray(x, np.float32), np.zeros(latency, np.float32)])
    y = np.empty_like(padded)
    started = time.perf_counter()
    for i in range(0, padded.shape[0], block_size):
        chain.process(padded[i:i + block_size], y[i:i + block_size])
        if progress is not None:
            progress(min(i + block_size, padded.shape[0]), padded.shape[0], time.perf_counter() - started)
    return y[latency:]


def render_file(chain: Chain, in_path, out_path, block_size: int = 4096, progress=None,
                notify: Callable[[str], None] = lambda note: None) -> None:
    """Render a file through the chain; the output keeps the input's rate and is 32-bit float.

    ``notify`` hears, before rendering starts, what was done to the input (channels mixed
    down, rate converted). Nothing is written under out_path unless the render completes.
    """
    audio = read_mono(in_path, chain.sample_rate)
    for note in audio.notes:
        notify(note)
    y = render(chain, audio.samples, block_size, progress)
    if audio.source_rate != chain.sample_rate:
        y = resample(y, chain.sample_rate, audio.source_rate)
    write_float(out_path, y, audio.source_rate)
