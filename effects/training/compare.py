"""The conditioning-method comparison: ``python -m effects.training.compare``.

Runs on the CLI thread. For each trained OD-3 student (the configs in resources/training/od3-*.yaml,
trained with ``knobnet train``), plays the student and the real-OD-3 teacher as pedals over clean DI
that no student trained on, at knob settings the students saw in training and at settings they
never saw, and tabulates params, ops/sample, real-time factor and ESR against the teacher.
Writes docs/conditioning.md.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch

from app.bench import real_time_factor
from effects import load_pedal
from effects.audio_io import read_mono
from effects.modelfile import shared_path
from effects.training.distill import HELD_OUT_DI
from effects.training.losses import esr

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEACHER = shared_path("models", "od3-pyneuralfx", "statichyper_gru_32.pt")


def esr_against_teacher(student_path, settings, clips, teacher_outputs: dict) -> float:
    """Mean ESR (as ``losses.metrics``) of the student pedal against the teacher pedal over
    settings x clips; teacher_outputs caches the teacher's output per (setting, clip)."""
    values = []
    for knobs in settings:
        for i, x in enumerate(clips):
            key = (tuple(sorted(knobs.items())), i)
            if key not in teacher_outputs:
                teacher_outputs[key] = torch.from_numpy(load_pedal("od3", model_path=TEACHER, **knobs).process(x))
            student = torch.from_numpy(load_pedal("od3", model_path=student_path, **knobs).process(x))
            values.append(float(esr(student.double(), teacher_outputs[key].double(), eps=1e-5)))
    return float(np.mean(values))


def compare(dataset=ROOT / "out" / "datasets" / "od3", runs=ROOT / "out" / "train",
            methods=("concat", "film", "statichyper", "dynamichyper")):
    desc = json.loads((pathlib.Path(dataset) / "dataset.json").read_text())
    seen = [p["knobs"] for p in desc["pairs"] if p.get("split") == "train"][:8]
    unseen = [p["knobs"] for p in desc["pairs"] if p.get("split") == "test"][:8]
    clips = [read_mono(shared_path("data", rel), 48000).samples for rel in HELD_OUT_DI]
    rows, teacher_outputs = [], {}
    for label, path in [("teacher: StaticHyper-GRU-32 (pyneuralfx)", TEACHER)] + [
            (f"{m}-GRU-32 (knobnet student)", pathlib.Path(runs) / f"od3-{m}" / "model.npz") for m in methods]:
        if not pathlib.Path(path).is_file():
            rows.append({"model": label, "missing": str(path)})
            continue
        pedal = load_pedal("od3", model_path=path)
        info = pedal.info()
        row = {"model": label, "params": info["params"], "ops_per_sample": info["ops_per_sample"],
               "rtf_128": real_time_factor(pedal, 48000, 128, 2.0)}
        if path != TEACHER:
            report = json.loads((pathlib.Path(path).parent / "report.json").read_text())
            row["best_valid"] = report["best_valid_loss"]
            row["esr_seen"] = esr_against_teacher(path, seen, clips, teacher_outputs)
            row["esr_unseen"] = esr_against_teacher(path, unseen, clips, teacher_outputs)
        rows.append(row)
    return rows


def markdown(rows) -> str:
    lines = ["# Conditioning methods on the same OD-3 data", "",
             "Students of the real-OD-3 teacher, all GRU-32, trained on the same distilled dataset "
             "(`knobnet distill`, 300 settings x 2 s) with the same recipe (resources/training/od3-*.yaml). "
             "ESR is against the teacher, on clean DI no student trained on "
             f"({', '.join(HELD_OUT_DI)}), at 8 knob settings seen in training and 8 never seen. "
             "Concat, FiLM and static hyper fold into plain GRU weights per knob setting, so they stream at the "
             "same cost; dynamic hyper runs a small hyper GRU and re-modulates the main GRU every sample. "
             "Real-time factor: one thread, 48 kHz, 128-sample blocks, as `knobnet bench`, measured one after "
             "another on a shared machine (compare ratios within one table, not across runs). Best valid loss: "
             "the training loss (pre-emphasised ESR against the teacher) on the validation pairs, best of the "
             "run's validations (every 250 steps).", "",
             "| model | params | ops/sample | RTF @128 | best valid loss | ESR seen | ESR unseen |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['model']} | not trained ({r['missing']}) | | | | | |")
            continue
        esr = (f"{r['best_valid']:.4f} | {r['esr_seen']:.4f} | {r['esr_unseen']:.4f}" if "esr_seen" in r
               else "| (reference) | (reference)")
        lines.append(f"| {r['model']} | {r['params']:,} | {r['ops_per_sample']:,} | {r['rtf_128']:.1f}x | {esr} |")
    lines += ["", "Reproduce: `python -m effects.training.compare` (after training the four configs).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "conditioning.md"))
    args = parser.parse_args(argv)
    rows = compare()
    text = markdown(rows)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
