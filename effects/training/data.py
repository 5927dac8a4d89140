"""Paired-recording datasets: the folder format, its validation, and teacher distillation.

Runs on the training/CLI thread.

A dataset is a folder with ``dataset.json``::

    {"sample_rate": 48000,                       # optional: files are resampled to it
     "knobs": {"drive": [0, 10], "tone": [0, 10]},  # name -> [minimum, maximum], in model order
     "pairs": [{"input": "a_in.wav", "target": "a_out.wav",
                "knobs": {"drive": 5, "tone": 3}, "split": "train"}]}   # split: train/valid/test

A pair without a split is cut in time: the first 70% trains, the next 10% validates, the last
20% tests. Knobs are normalised to [-1, 1] over their ranges for the model.

A target that starts with digital silence (``MIN_UNMEASURED_SAMPLES`` or more exact zeros, which no
recording chain with any noise plays) while its input does not holds no recording there: the JVM targets
all start with 2,048 zeros, cut or gated, while the inputs already play. (A distilled pair whose input
starts with exact zeros has a target that rightly does too.) The pair's ``measured_from`` marks where the
recording begins; the model runs through the samples before it (they warm its state up), but they
count in no loss and no metric.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from effects.audio_io import AudioFileError, read_mono, write_float

SPLITS = ("train", "valid", "test")
MIN_UNMEASURED_SAMPLES = 32  # leading exact zeros of a target that mark it unmeasured there (module doc)


class DatasetError(ValueError):
    """A dataset folder or its description is unusable; the message names the file and problem."""


@dataclasses.dataclass
class Pair:
    name: str
    x: np.ndarray
    y: np.ndarray
    knobs: dict[str, float]
    cond: np.ndarray  # normalised to [-1, 1], in the dataset's knob order
    split: str | None
    measured_from: int = 0  # the target's first recorded sample (module doc)


@dataclasses.dataclass
class Dataset:
    folder: pathlib.Path
    sample_rate: int
    knob_ranges: dict[str, tuple[float, float]]
    pairs: list[Pair]
    warnings: list[str]

    def split(self, which: str) -> list[Pair]:
        """Pairs (or time-cut parts of unsplit pairs) of one split; a part that lies wholly in its pair's
        unmeasured head is left out."""
        cuts = {"train": (0.0, 0.7), "valid": (0.7, 0.8), "test": (0.8, 1.0)}
        out = []
        for p in self.pairs:
            if p.split == which:
                out.append(p)
            elif p.split is None:
                a, b = (int(f * len(p.x)) for f in cuts[which])
                if p.measured_from < b:
                    out.append(dataclasses.replace(p, name=f"{p.name}[{which}]", x=p.x[a:b], y=p.y[a:b],
                                                   measured_from=max(0, p.measured_from - a)))
        return out


def unmeasured_head(x: np.ndarray, y: np.ndarray) -> int:
    """How many samples at the start of target y hold no recording: its leading exact zeros, if there are
    at least ``MIN_UNMEASURED_SAMPLES`` of them and input x is not digital silence there too, else 0."""
    nonzero = np.flatnonzero(y)
    head = int(nonzero[0]) if nonzero.size else len(y)
    return head if head >= MIN_UNMEASURED_SAMPLES and np.any(x[:head]) else 0


def estimate_latency(x: np.ndarray, y: np.ndarray, sample_rate: int, max_ms: float = 50.0) -> tuple[int, float]:
    """Lag (samples, target behind input) maximising the cross-correlation, and its normalised peak."""
    n = min(len(x), len(y), sample_rate * 10)
    a, b = x[:n].astype(np.float64), y[:n].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    max_lag = int(sample_rate * max_ms / 1000)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    values = np.r_[corr[:max_lag + 1], corr[-max_lag:]]
    k = int(np.argmax(np.abs(values)))
    peak = abs(values[k]) / (np.sqrt((a ** 2).sum() * (b ** 2).sum()) + 1e-12)
    return int(lags[k]), float(peak)


def read_description(folder) -> tuple[dict, dict[str, tuple[float, float]], list[dict]]:
    """A dataset folder's dataset.json: the whole description, its knob ranges and its pair entries.

    Raises DatasetError when it is missing or unreadable (what the pairs hold is ``load_dataset``'s business).
    """
    desc_path = pathlib.Path(folder) / "dataset.json"
    if not desc_path.is_file():
        raise DatasetError(f"{folder}: no dataset.json (see effects/training/data.py for the format)")
    try:
        desc = json.loads(desc_path.read_text())
        knob_ranges = {k: (float(v[0]), float(v[1])) for k, v in desc["knobs"].items()}
        entries = list(desc["pairs"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DatasetError(f"{desc_path}: unreadable description ({type(exc).__name__}: {exc})") from None
    return desc, knob_ranges, entries


def normalised_knobs(knobs: dict, knob_ranges: dict) -> np.ndarray:
    """A pair's conditioning vector: each knob of knob_ranges mapped from [lo, hi] to [-1, 1], in their order."""
    return np.array([2 * (float(knobs[k]) - lo) / (hi - lo) - 1 for k, (lo, hi) in knob_ranges.items()], np.float32)


def load_dataset(folder, max_latency_ms: float = 5.0) -> Dataset:
    """Read and validate a dataset folder.

    Raises DatasetError for what makes training meaningless (missing files, length or rate mismatch,
    misaligned pairs, silence, knobs out of range or unknown); returns warnings for what deserves a
    look (clipping, near-silence).
    """
    folder = pathlib.Path(folder)
    desc_path = folder / "dataset.json"
    desc, knob_ranges, entries = read_description(folder)
    if not entries:
        raise DatasetError(f"{desc_path}: no pairs")
    for name, (lo, hi) in knob_ranges.items():
        if not hi > lo:
            raise DatasetError(f"{desc_path}: knob '{name}' has an empty range [{lo}, {hi}]")
    rate = desc.get("sample_rate")
    pairs, warnings = [], []
    for i, e in enumerate(entries):
        label = f"{desc_path.name} pair {i}"
        try:
            xa = read_mono(folder / e["input"], rate)
            ya = read_mono(folder / e["target"], rate)
        except KeyError as exc:
            raise DatasetError(f"{label}: missing field {exc.args[0]}") from None
        except AudioFileError as exc:
            raise DatasetError(f"{label}: {exc}") from None
        name = pathlib.Path(e["input"]).stem.removesuffix("_input")
        if rate is None and xa.source_rate != ya.source_rate:
            raise DatasetError(f"{name}: input is {xa.source_rate} Hz but target is {ya.source_rate} Hz")
        rate = rate or xa.sample_rate
        if len(xa.samples) != len(ya.samples):
            raise DatasetError(f"{name}: input has {len(xa.samples)} samples but target {len(ya.samples)}")
        for what, a in (("input", xa.samples), ("target", ya.samples)):
            rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
            if rms < 1e-5:
                raise DatasetError(f"{name}: {what} is silent (RMS {20 * np.log10(rms + 1e-12):.0f} dBFS)")
            clipped = float(np.mean(np.abs(a) >= 0.999))
            if clipped > 1e-4:
                warnings.append(f"{name}: {what} clips ({clipped * 100:.2f}% of samples at full scale)")
        lag, peak = estimate_latency(xa.samples, ya.samples, rate)
        # A filter's group delay or a distortion's phase shifts the peak a little; a recording
        # chain's latency moves it further. Beyond max_latency_ms the pair is called misaligned. A held
        # note correlates almost as well one period away, so such a pair can be called misaligned when
        # it is not (a compressed 110 Hz note: 402 samples, by 0.3 %); the message says so. Preferring
        # the nearer lag instead let truly misaligned held notes through, and silent misalignment is worse.
        if abs(lag) > max_latency_ms * 1e-3 * rate and peak > 0.2:
            raise DatasetError(f"{name}: target is {abs(lag)} samples ({abs(lag) / rate * 1e3:.1f} ms) "
                               f"{'behind' if lag > 0 else 'ahead of'} the input (cross-correlation); "
                               f"align the pair or raise max_latency_ms (a held note can look misaligned by "
                               f"whole periods)")
        knobs = e.get("knobs", {})
        unknown = set(knobs) - set(knob_ranges)
        if unknown:
            raise DatasetError(f"{name}: unknown knob(s) {', '.join(sorted(unknown))}")
        for k, (lo, hi) in knob_ranges.items():
            if k not in knobs:
                raise DatasetError(f"{name}: knob '{k}' has no value")
            if not lo <= float(knobs[k]) <= hi:
                raise DatasetError(f"{name}: knob '{k}' = {float(knobs[k]):g} is outside [{lo:g}, {hi:g}]")
        split = e.get("split")
        if split is not None and split not in SPLITS:
            raise DatasetError(f"{name}: split must be one of {', '.join(SPLITS)}, not {split!r}")
        head = unmeasured_head(xa.samples, ya.samples)
        pairs.append(Pair(name, xa.samples, ya.samples, {k: float(v) for k, v in knobs.items()},
                          normalised_knobs(knobs, knob_ranges), split, head))
    warnings += _head_warnings(pairs, int(rate))
    return Dataset(folder, int(rate), knob_ranges, pairs, warnings)


def _head_warnings(pairs, rate: int) -> list[str]:
    """One warning per length of unmeasured head, naming the pairs (the JVM's 15 share one)."""
    by_head: dict[int, list[str]] = {}
    for p in pairs:
        if p.measured_from:
            by_head.setdefault(p.measured_from, []).append(p.name)
    out = []
    for head, names in by_head.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        out.append(f"{shown}: the target{'s start' if len(names) > 1 else ' starts'} with {head} samples "
                   f"({head / rate * 1e3:.0f} ms) of digital silence while the input plays, not a recording: the "
                   f"model warms up through them, no loss or metric counts them")
    return out


def check_report(ds: Dataset) -> str:
    """The data check: per pair, length, levels and input/target latency."""
    lines = [f"{ds.folder}: {len(ds.pairs)} pairs at {ds.sample_rate} Hz, knobs "
             + ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in ds.knob_ranges.items())]
    for p in ds.pairs:
        lag, peak = estimate_latency(p.x, p.y, ds.sample_rate)
        rx = 20 * np.log10(np.sqrt(np.mean(p.x.astype(np.float64) ** 2)) + 1e-12)
        ry = 20 * np.log10(np.sqrt(np.mean(p.y.astype(np.float64) ** 2)) + 1e-12)
        lines.append(f"  {p.name:<32} {len(p.x) / ds.sample_rate:6.2f} s  in {rx:6.1f} dBFS  out {ry:6.1f} dBFS  "
                     f"latency {lag:+d} samples (corr {peak:.2f})  {p.split or 'time-split'}  "
                     + " ".join(f"{k}={v:g}" for k, v in p.knobs.items()))
    lines += [f"  warning: {w}" for w in ds.warnings]
    return "\n".join(lines)


def appendable(folder, sample_rate: int, knob_ranges: dict) -> list[dict]:
    """The pair entries of the dataset in folder, if pairs at sample_rate with knob_ranges may be added to it.

    Raises DatasetError (no dataset.json, unreadable, another rate or other knobs).
    """
    desc, old_ranges, entries = read_description(folder)
    new_ranges = {k: (float(v[0]), float(v[1])) for k, v in knob_ranges.items()}
    if desc.get("sample_rate") != sample_rate or old_ranges != new_ranges:
        raise DatasetError(f"{pathlib.Path(folder) / 'dataset.json'}: holds {desc.get('sample_rate')} Hz, knobs "
                           f"{old_ranges}; cannot append pairs at {sample_rate} Hz, knobs {new_ranges}")
    return entries


def write_dataset(folder, sample_rate: int, knob_ranges: dict, pairs: list[dict], append: bool = False) -> None:
    """Write a dataset folder: pairs are dicts with name, x, y, knobs and optional split.

    append: add the pairs to the folder's dataset.json (``appendable``; new names) instead of replacing it.
    The description is replaced atomically, so an interrupted write leaves the old one.
    """
    folder = pathlib.Path(folder)
    entries = appendable(folder, sample_rate, knob_ranges) if append else []
    taken = {e.get("input") for e in entries}
    clash = [p["name"] for p in pairs if f"{p['name']}_input.wav" in taken]
    if clash:
        raise DatasetError(f"{folder / 'dataset.json'}: already holds pair(s) {', '.join(clash[:3])}")
    folder.mkdir(parents=True, exist_ok=True)
    for p in pairs:
        write_float(folder / f"{p['name']}_input.wav", p["x"], sample_rate)
        write_float(folder / f"{p['name']}_target.wav", p["y"], sample_rate)
        entries.append({"input": f"{p['name']}_input.wav", "target": f"{p['name']}_target.wav",
                        "knobs": p["knobs"], **({"split": p["split"]} if p.get("split") else {})})
    tmp = folder / "dataset.json.tmp"
    tmp.write_text(json.dumps(
        {"sample_rate": sample_rate, "knobs": {k: list(v) for k, v in knob_ranges.items()}, "pairs": entries}, indent=1))
    os.replace(tmp, folder / "dataset.json")
