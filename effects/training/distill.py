"""Teacher distillation: training pairs made by running a model of a device on varied guitar input.

Runs on the CLI/training thread. Where only a model of a device exists (the OD-3 and LA-2A models in
../shared), a student learns from the teacher's outputs on clean DI guitar (the DI clips in
../shared/data) and on synthesized signals (plucked strings, chords, level sweeps), at knob settings
drawn uniformly over the whole knob space, as a data-collection robot would. Test pairs use DI the
student never hears in training.
"""
from __future__ import annotations

import pathlib

import numpy as np

from effects import load_pedal
from effects.audio_io import read_mono
from effects.modelfile import shared_path
from effects.progress import Progress
from effects.training.data import write_dataset

# Clean DI the students never train on: their test pairs come from these alone.
HELD_OUT_DI = ("di/guitar_cl1b_test.wav", "jvm410h/B3_M7_T1_G5_file_7_input.wav")


def pluck(sample_rate: int, f0_hz: float, seconds: float, rng, brightness: float = 0.5) -> np.ndarray:
    """A Karplus-Strong plucked string (noise burst through a damped delay loop)."""
    n = int(sample_rate * seconds)
    period = max(2, int(round(sample_rate / f0_hz)))
    buf = rng.uniform(-1, 1, period)
    for _ in range(int(3 * (1 - brightness))):  # a darker pick: smooth the burst
        buf = 0.5 * (buf + np.roll(buf, 1))
    out = np.empty(n)
    decay = 0.996 + 0.0035 * rng.random()
    for i in range(n):
        j = i % period
        out[i] = buf[j]
        buf[j] = decay * 0.5 * (buf[j] + buf[(j + 1) % period])
    return out


def synth_phrase(sample_rate: int, seconds: float, rng) -> np.ndarray:
    """Single notes, chords and a level sweep, at random pitches of a guitar's range."""
    n = int(sample_rate * seconds)
    x = np.zeros(n)
    t = 0.0
    while t < seconds - 0.1:
        dur = rng.choice([0.15, 0.3, 0.6, 1.2])
        start = int(t * sample_rate)
        notes = rng.choice([1, 1, 3, 4])
        root = 82.4 * 2 ** (rng.integers(0, 24) / 12)
        for k, interval in enumerate((0, 7, 12, 16)[:notes]):
            tone = pluck(sample_rate, root * 2 ** (interval / 12), min(dur * 2, seconds - t), rng, rng.random())
            offset = start + int(k * rng.uniform(0.005, 0.02) * sample_rate)  # strummed
            end = min(n, offset + len(tone))
            x[offset:end] += tone[:end - offset] * rng.uniform(0.3, 1.0)
        t += dur
    x *= np.linspace(rng.uniform(0.05, 1.0), rng.uniform(0.05, 1.0), n)  # level sweep
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def training_inputs(sample_rate: int, synth_seconds: float, rng) -> list[np.ndarray]:
    """DI clips from ../shared/data (all but the held-out ones) plus synthesized phrases."""
    clips = []
    for folder in ("di", "jvm410h"):
        for path in sorted(shared_path("data", folder).glob("*.wav")):
            rel = f"{folder}/{path.name}"
            if rel in HELD_OUT_DI or "target" in path.name:
                continue
            clips.append(read_mono(path, sample_rate).samples)
    clips += [synth_phrase(sample_rate, 10.0, rng) for _ in range(int(np.ceil(synth_seconds / 10)))]
    return clips


def sample_knobs(pedal, names, rng) -> dict:
    """Uniform over each knob's range; switches take each position with equal chance."""
    out = {}
    for name in names:
        k = pedal.knob(name)
        out[name] = float(rng.integers(0, len(k.choices))) if k.choices else float(rng.uniform(k.minimum, k.maximum))
    return out


def distill(teacher: str, folder, knob_names, train_settings: int = 300, seconds_per_setting: float = 2.0,
            valid_settings: int = 20, test_settings: int = 16, synth_seconds: float = 120.0, seed: int = 0,
            teacher_path=None) -> pathlib.Path:
    """Write a dataset folder of (input, teacher output) pairs at random knob settings."""
    rng = np.random.default_rng(seed)
    pedal = load_pedal(teacher, model_path=teacher_path)
    rate = pedal.sample_rate
    inputs = training_inputs(rate, synth_seconds, rng)
    held_out = [read_mono(shared_path("data", rel), rate).samples for rel in HELD_OUT_DI]
    n = int(seconds_per_setting * rate)
    pairs = []
    plan = [("train", train_settings, inputs), ("valid", valid_settings, inputs), ("test", test_settings, held_out)]
    with Progress(sum(p[1] for p in plan), f"distilling {teacher}", "pairs") as bar:
        for split, count, sources in plan:
            for i in range(count):
                knobs = sample_knobs(pedal, knob_names, rng)
                src = sources[i % len(sources)] if split == "test" else sources[rng.integers(len(sources))]
                if split == "test":
                    x = src.copy()
                else:
                    start = rng.integers(0, max(1, len(src) - n))
                    x = src[start:start + n].copy()
                x *= rng.uniform(0.1, 1.0) / (np.abs(x).max() + 1e-9)  # peak level from -20 to 0 dBFS
                pedal.reset()
                pedal.set_knobs(**knobs)
                y = pedal.process(x)
                pairs.append({"name": f"{split}{i:04d}", "x": x, "y": y, "knobs": knobs, "split": split})
                bar.update(len(pairs))
    ranges = {k: (pedal.knob(k).minimum, pedal.knob(k).maximum) for k in knob_names}
    write_dataset(folder, rate, ranges, pairs)
    return pathlib.Path(folder)
