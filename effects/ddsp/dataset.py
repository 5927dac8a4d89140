"""The JVM 410H recordings as a ``knobnet train`` dataset folder: ``python -m effects.ddsp.dataset [FOLDER]``.

``../shared/data/jvm410h/`` holds 15 real 5 s input/target pairs at gain 5 and five tone settings.
The test split holds out B3_M7_T1 and B0_M0_T10 entirely (unseen tone settings) and file 8 of the
two settings recorded six times (unseen clips of seen settings); the other 11 clips train. The
recordings hold no master: the dataset's knobs are gain, bass, middle, treble (0..10), which the
``ddsp`` model type reads with master at 5 (``amp.cond_to_panel``).

The targets lag the inputs by the recording chain's latency and the amp's own delay together: the
phase of the input-to-target cross-spectrum falls at 1.5-4 kHz with a slope of 5.2-6.5 samples on
every clip. Only the chain's share is to be removed: a causal model cannot lead the amp, and the
amp's own low-passes (presumably Miller capacitances and the transformer) delay its highs by some
samples that a chain of minimum-phase filters and GRU1s can reproduce. Which share is the chain's
was chosen by training the shipped recipe with each removal from 0 to 6 samples and keeping the best
validation loss (training clips only; resources/jvm/MODEL_CARD.md, "Alignment"): 1 sample. Target
sample t + LATENCY_SAMPLES is paired with input sample t.

An amp with oversampled GRU1s (``amp.OVERSAMPLED_GRUS``) delays its path by about 2.5 samples more
(the halfbands'), so its dataset pairs target sample t - 1 with input sample t
(``LATENCY_SAMPLES_OVERSAMPLED``: ``--latency-samples -1``; "Oversampled GRU1s" in the model card).

Runs on the CLI thread.
"""
from __future__ import annotations

import json
import pathlib
import sys

from effects.modelfile import shared_path

DATA_DIR = shared_path("data", "jvm410h")
HOLDOUT = ("B3_M7_T1_G5_file_7", "B0_M0_T10_G5_file_7", "B10_M0_T0_G5_file_8", "B1_M3_T7_G5_file_8")
UNSEEN_SETTINGS = ("B3_M7_T1", "B0_M0_T10")
KNOBS = ("gain", "bass", "middle", "treble")
KNOB_RANGES = {k: (0.0, 10.0) for k in KNOBS}  # the panel scale the clips' knobs are given in
LATENCY_SAMPLES = 1
LATENCY_SAMPLES_OVERSAMPLED = -1


def latency_samples_for(oversampled) -> int:
    """The alignment an amp with these oversampled GRU1s trains and is scored at (module doc). Only the
    two alignments chosen so far: another set of oversampled GRU1s delays the path by another amount
    (1.23 samples per GRU1 on the signal path), so its alignment is to be chosen first (ValueError)."""
    from effects.ddsp import amp
    chosen = {(): LATENCY_SAMPLES, amp.OVERSAMPLED_GRUS: LATENCY_SAMPLES_OVERSAMPLED}
    key = amp.check_oversampled(oversampled)
    if key not in chosen:
        raise ValueError(f"no JVM dataset alignment has been chosen for GRU1s {list(key)} at twice the rate "
                         f"(only for {list(amp.OVERSAMPLED_GRUS)} or none)")
    return chosen[key]


def load_clips(data_dir=DATA_DIR, latency_samples: int = LATENCY_SAMPLES) -> list[dict]:
    """[{name, x, y, knobs, split}] of the recordings listed in ``clips.json`` (float32, 44.1 kHz),
    with the target advanced by ``latency_samples`` (delayed where negative; both trimmed to the same length)."""
    import soundfile as sf
    data_dir = pathlib.Path(data_dir)
    clips = []
    for c in json.loads((data_dir / "clips.json").read_text())["clips"]:
        x, _ = sf.read(data_dir / c["input"], dtype="float32")
        y, _ = sf.read(data_dir / c["target"], dtype="float32")
        name = c["input"].removesuffix("_input.wav")
        skip_x, skip_y = max(-latency_samples, 0), max(latency_samples, 0)  # samples dropped at the start
        n = min(len(x) - skip_x, len(y) - skip_y)
        clips.append({"name": name, "x": x[skip_x:skip_x + n], "y": y[skip_y:skip_y + n], "knobs": {k: float(c["knobs"][k]) for k in KNOBS},
                      "split": "test" if name in HOLDOUT else "train", "sample_rate": int(c["sample_rate"])})
    return clips


def write_jvm_dataset(folder, data_dir=DATA_DIR, latency_samples: int = LATENCY_SAMPLES) -> None:
    """Write the dataset folder (copies of the WAVs and dataset.json) for ``knobnet train``."""
    from effects.training.data import write_dataset
    clips = load_clips(data_dir, latency_samples)
    write_dataset(folder, clips[0]["sample_rate"], KNOB_RANGES, clips)


def main(argv=None) -> None:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m effects.ddsp.dataset", description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="out/datasets/jvm")
    ap.add_argument("--latency-samples", type=int, default=LATENCY_SAMPLES,
                    help=f"target samples paired one input sample earlier (default {LATENCY_SAMPLES}; "
                         f"{LATENCY_SAMPLES_OVERSAMPLED} for oversampled GRU1s)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    folder = pathlib.Path(args.folder)
    write_jvm_dataset(folder, latency_samples=args.latency_samples)
    n = len(json.loads((folder / "dataset.json").read_text())["pairs"])
    print(f"wrote {folder}: {n} pairs, test split: {', '.join(HOLDOUT)}")


if __name__ == "__main__":
    main()
