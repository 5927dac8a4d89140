"""Teacher distillation: training pairs made by running a model of a device on varied guitar input.

Runs on the CLI/training thread. Where only a model of a device exists (the OD-3 and LA-2A models in
../shared), a student learns from the teacher's outputs on clean DI guitar (the DI clips in
../shared/data) and on synthesized signals (plucked strings, chords, level sweeps), at knob settings
drawn uniformly over the whole knob space, as a data-collection robot would. Test pairs use DI the
student never hears in training.

A compressor's output depends on the level history of its input, so for one (``dynamics=True``,
used for the LA-2A) the inputs also vary in level within a pair: a random level envelope (ramps and
steps over 36 dB, gaps of silence for the release) over most training clips and half the test
clips, and synthesized dynamics phrases (sustained tones, strums and single notes at levels from
-36 to 0 dB, separated by gaps).
"""
from __future__ import annotations

import pathlib

import numpy as np

from effects import load_pedal
from effects.audio_io import read_mono
from effects.modelfile import shared_path
from effects.progress import Progress
from effects.training.data import DatasetError, appendable, write_dataset

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


def sustained_tone(sample_rate: int, f0_hz: float, seconds: float, rng) -> np.ndarray:
    """A held note: eight harmonics (1/k), decaying over 1-6 s, with a slow vibrato."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    vibrato = 1.0 + 0.003 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t)
    phase = 2 * np.pi * f0_hz * np.cumsum(vibrato) / sample_rate
    x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9) if k * f0_hz < 0.4 * sample_rate)
    attack = np.minimum(1.0, t / 0.005)
    return attack * np.exp(-t / rng.uniform(1.0, 6.0)) * x


def dynamics_phrase(sample_rate: int, seconds: float, rng) -> np.ndarray:
    """Sustained tones, strums and single notes at levels from -36 to 0 dB, with gaps between."""
    n = int(sample_rate * seconds)
    x = np.zeros(n)
    t = 0.0
    while t < seconds - 0.1:
        kind = rng.choice(["sustain", "strum", "note", "gap"], p=[0.3, 0.25, 0.25, 0.2])
        dur = {"sustain": rng.uniform(0.8, 3.0), "strum": rng.uniform(0.3, 1.5), "note": rng.uniform(0.1, 0.6),
               "gap": rng.uniform(0.05, 0.8)}[kind]
        start = int(t * sample_rate)
        root = 82.4 * 2 ** (rng.integers(0, 24) / 12)
        gain = 10 ** (rng.uniform(-36.0, 0.0) / 20)
        length = min(int(dur * sample_rate), n - start)
        if kind == "sustain":
            tone = sustained_tone(sample_rate, root, dur, rng)
        elif kind == "strum":
            tone = sum(np.pad(pluck(sample_rate, root * 2 ** (i / 12), dur, rng, rng.random()),
                              (int(k * rng.uniform(0.005, 0.02) * sample_rate), 0))[:int(dur * sample_rate)]
                       for k, i in enumerate((0, 7, 12, 16)))
        elif kind == "note":
            tone = pluck(sample_rate, root, dur, rng, rng.random())
        else:
            tone = np.zeros(length)
        tone = tone[:length]
        x[start:start + length] += gain * tone / (np.abs(tone).max() + 1e-9)
        t += dur
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def level_envelope(n: int, sample_rate: int, rng) -> np.ndarray:
    """A gain curve over n samples: ramps and steps between levels of -36..0 dB every 0.2-1.5 s,
    and gaps of silence (50-600 ms) with chance 0.15 at each breakpoint."""
    times, levels_db = [0.0], [rng.uniform(-36.0, 0.0)]
    gaps = []
    while times[-1] < n / sample_rate:
        t = times[-1] + rng.uniform(0.2, 1.5)
        if rng.random() < 0.4:  # a step: the old level up to t, the new one from t
            times.append(t)
            levels_db.append(levels_db[-1])
        times.append(t)
        levels_db.append(rng.uniform(-36.0, 0.0))
        if rng.random() < 0.15:
            gaps.append((t, t + rng.uniform(0.05, 0.6)))
    env = 10 ** (np.interp(np.arange(n) / sample_rate, times, levels_db) / 20)
    for a, b in gaps:
        env[int(a * sample_rate):int(b * sample_rate)] = 0.0
    return env.astype(np.float32)


def training_inputs(sample_rate: int, synth_seconds: float, rng, dynamics: bool = False) -> list[np.ndarray]:
    """DI clips from ../shared/data (all but the held-out ones) plus synthesized phrases (and, with
    dynamics, as many seconds of dynamics phrases)."""
    clips = []
    for folder in ("di", "jvm410h"):
        for path in sorted(shared_path("data", folder).glob("*.wav")):
            rel = f"{folder}/{path.name}"
            if rel in HELD_OUT_DI or "target" in path.name:
                continue
            clips.append(read_mono(path, sample_rate).samples)
    clips += [synth_phrase(sample_rate, 10.0, rng) for _ in range(int(np.ceil(synth_seconds / 10)))]
    if dynamics:
        clips += [dynamics_phrase(sample_rate, 10.0, rng) for _ in range(int(np.ceil(synth_seconds / 10)))]
    return clips


def check_knob_limits(pedal, names, limits: dict) -> None:
    """ValueError unless every limit names a sampled continuous knob and lies inside its range."""
    for name, (lo, hi) in limits.items():
        if name not in names:
            raise ValueError(f"knob '{name}' has a range but is not among the knobs sampled ({', '.join(names)})")
        k = pedal.knob(name)
        if k.choices:
            raise ValueError(f"knob '{name}' is a switch ({', '.join(k.choices)}): it takes no range")
        if not k.minimum <= lo < hi <= k.maximum:
            raise ValueError(f"knob '{name}': range {lo:g}:{hi:g} is not inside [{k.minimum:g}, {k.maximum:g}]")


def sample_knobs(pedal, names, rng, limits: dict | None = None) -> dict:
    """Uniform over each knob's range, or over limits[name] = (low, high) within it (``check_knob_limits``);
    switches take each position with equal chance."""
    out = {}
    for name in names:
        k = pedal.knob(name)
        lo, hi = (limits or {}).get(name, (k.minimum, k.maximum))
        out[name] = float(rng.integers(0, len(k.choices))) if k.choices else float(rng.uniform(lo, hi))
    return out


def distill(teacher: str, folder, knob_names, train_settings: int = 300, seconds_per_setting: float = 2.0,
            valid_settings: int = 20, test_settings: int = 16, synth_seconds: float = 120.0, seed: int = 0,
            teacher_path=None, dynamics: bool = False, knob_limits: dict | None = None,
            append: bool = False) -> pathlib.Path:
    """Write a dataset folder of (input, teacher output) pairs at random knob settings.

    dynamics: vary the level within pairs (see the module docstring): a level envelope over 3 in 4
    training and validation pairs and over test pairs 2, 3, 6, 7, ... (each held-out clip both
    with and without).
    knob_limits: {name: (low, high)} to sample some knobs over part of their range (e.g. more data where
    a student is weak); the dataset still declares each knob's whole range.
    append: add the pairs to the folder's dataset (named after the seed) instead of replacing it.
    """
    rng = np.random.default_rng(seed)
    pedal = load_pedal(teacher, model_path=teacher_path)
    rate = pedal.sample_rate
    # Refuse bad ranges and appends before any work (input synthesis, the teacher's runs).
    check_knob_limits(pedal, knob_names, knob_limits or {})
    prefix = f"seed{seed}-" if append else ""
    ranges = {k: (pedal.knob(k).minimum, pedal.knob(k).maximum) for k in knob_names}
    if append and any(e.get("input", "").startswith(prefix) for e in appendable(folder, rate, ranges)):
        raise DatasetError(f"{pathlib.Path(folder) / 'dataset.json'}: already holds pairs of seed {seed}; "
                           f"append with another --seed")
    inputs = training_inputs(rate, synth_seconds, rng, dynamics)
    held_out = [read_mono(shared_path("data", rel), rate).samples for rel in HELD_OUT_DI]
    n = int(seconds_per_setting * rate)
    pairs = []
    plan = [("train", train_settings, inputs), ("valid", valid_settings, inputs), ("test", test_settings, held_out)]
    with Progress(sum(p[1] for p in plan), f"distilling {teacher}", "pairs") as bar:
        for split, count, sources in plan:
            for i in range(count):
                knobs = sample_knobs(pedal, knob_names, rng, knob_limits)
                src = sources[i % len(sources)] if split == "test" else sources[rng.integers(len(sources))]
                if split == "test":
                    x = src.copy()
                else:
                    start = rng.integers(0, max(1, len(src) - n))
                    x = src[start:start + n].copy()
                if dynamics and ((i // 2) % 2 == 1 if split == "test" else rng.random() < 0.75):
                    x *= level_envelope(len(x), rate, rng)
                x *= rng.uniform(0.1, 1.0) / (np.abs(x).max() + 1e-9)  # peak level from -20 to 0 dBFS
                pedal.set_knobs(**knobs)
                pedal.reset()  # at rest at these knobs (a pedal that settles would glide to knobs set after)
                y = pedal.process(x)
                pairs.append({"name": f"{prefix}{split}{i:04d}", "x": x, "y": y, "knobs": knobs, "split": split})
                bar.update(len(pairs))
    write_dataset(folder, rate, ranges, pairs, append=append)
    return pathlib.Path(folder)
