"""The conditioning-method comparison: ``python -m effects.training.compare``.

Runs on the CLI thread. For each trained OD-3 student (the configs in resources/training/od3-*.yaml,
trained with ``knobnet train``), plays the student and the real-OD-3 teacher as pedals over clean DI
that no student trained on, at knob settings the students saw in training and at settings they
never saw, and tabulates params, ops/sample, real-time factor and ESR against the teacher.
Writes docs/conditioning.md.

``python -m effects.training.compare --jvm``: the DDSP paper's Table 1 on knobnet's real JVM data
(DDSP amp vs Concat-GRU-8 vs Concat-GRU-48, the runs of resources/training/jvm-*.yaml), every
model streamed over the held-out clips and timed in one sitting. Writes docs/jvm-comparison.md.
``--jvm-card`` writes the shipped JVM weights' per-clip metrics and training histories beside them
(resources/jvm/jvm_ddsp.metrics.json, which the model card and tests/test_jvm.py read); with
``--rescore`` it scores the weights again and keeps the histories the file holds.
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
             f"({', '.join(HELD_OUT_DI)}), at 8 knob settings seen in training and 8 never seen, both played "
             "as pedals: from rest, with the DC they rest at subtracted (effects/rest.py). "
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


SHIPPED_JVM = ROOT / "resources" / "jvm" / "jvm_ddsp.npz"
JVM_RUNS = (("Concat-GRU-8", "jvm-gru8.yaml"), ("Concat-GRU-48", "jvm-gru48.yaml"))  # beside the shipped DDSP amp


def _shown(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _twin(model_path, num_conds: int):
    """The streaming twin of a trained JVM model file (DDSP amp or conditioned RNN)."""
    from effects.ddsp import stream
    from effects.modelfile import ModelFileError
    from effects.recurrent import load_conditioned_gru
    try:
        params, rate, meta = stream.load(model_path)
        return stream.AmpTwin(params, rate, num_conds, meta["oversampled"])
    except ModelFileError:
        return load_conditioned_gru(model_path, num_conds)[0]


def _shipped_jvm_clips() -> list[dict]:
    """The JVM clips at the shipped amp's alignment (``dataset.latency_samples_for`` its oversampled GRU1s)."""
    from effects.ddsp import dataset, stream
    return dataset.load_clips(latency_samples=dataset.latency_samples_for(stream.load(SHIPPED_JVM)[2]["oversampled"]))


def _jvm_pairs(clips):
    """``Pair``s of the JVM clips (``dataset.load_clips``), knobs normalised as their dataset folder's are."""
    from effects.ddsp.dataset import KNOB_RANGES
    from effects.training.data import Pair, normalised_knobs, unmeasured_head
    return [Pair(name=c["name"], x=c["x"], y=c["y"], knobs=c["knobs"], cond=normalised_knobs(c["knobs"], KNOB_RANGES),
                 split=c["split"], measured_from=unmeasured_head(c["x"], c["y"])) for c in clips]


def _score(twin, pairs, bands: bool = False) -> dict:
    """Per pair name: the streaming model's metrics (and with ``bands`` its ESR by octave band)."""
    from effects.training.losses import esr_by_band, metrics
    from effects.training.train import stream_pair
    scores = {}
    for p in pairs:  # from the target's first recorded sample (``Pair.measured_from``)
        y, target = stream_pair(twin, p)[p.measured_from:], p.y[p.measured_from:]
        scores[p.name] = metrics(y, target) | ({"esr_bands": esr_by_band(y, target, twin.sample_rate)} if bands else {})
    return scores


def jvm_compare(runs=JVM_RUNS) -> dict:
    """Rows (per model: params, ops/sample, RTF at 128, per-clip metrics, training steps and time) and
    the held-out clips' names and splits, every model streamed over the latency-aligned clips."""
    from effects.ddsp import amp, dataset
    from effects.modelfile import ModelFileError
    from effects.training.train import load_config, streaming_rtf

    aligned = [p for p in _jvm_pairs(dataset.load_clips()) if p.split == "test"]
    rows = []
    twin = _twin(SHIPPED_JVM, len(dataset.KNOBS))
    own = [p for p in _jvm_pairs(_shipped_jvm_clips()) if p.split == "test"]  # its own alignment
    rows.append({"model": "DDSP amp, shipped weights", "params": amp.count_params(),
                 "ops_per_sample": twin.ops_per_sample, "rtf_128": streaming_rtf(twin, twin.sample_rate),
                 "clips": _score(twin, own), "training": "see resources/jvm/MODEL_CARD.md"})
    for label, config in runs:
        config = ROOT / "resources" / "training" / config  # (an absolute path stays itself)
        cfg = load_config(config)
        report_path = pathlib.Path(cfg["out"]) / "report.json"
        if not report_path.is_file():
            rows.append({"model": label, "missing": f"knobnet train {_shown(config)}"})
            continue
        report = json.loads(report_path.read_text())
        try:
            twin = _twin(pathlib.Path(cfg["out"]) / "model.npz", len(dataset.KNOBS))
        except ModelFileError as exc:
            rows.append({"model": label, "missing": f"{exc}; rerun knobnet train {_shown(config)}"})
            continue
        history = report["history"]
        best = min(range(len(history)), key=lambda i: history[i]["valid"]) if history else -1
        stopped = ("still improving at the end" if best == len(history) - 1 else "best before the end") + (
            "" if report["steps"] >= cfg["train"]["steps"] else f", stopped at {report['steps']:,} of {cfg['train']['steps']:,}")
        rows.append({"model": label, "params": report["params"], "ops_per_sample": twin.ops_per_sample,
                     "rtf_128": streaming_rtf(twin, report["sample_rate"]), "clips": _score(twin, aligned),
                     "training": f"{report['steps']:,} steps, {report['train_seconds'] / 60:.0f} min ({stopped}); "
                                 f"best valid {report['best_valid_loss']:.3f} at step {history[best]['step'] if history else 0:,}"})
    splits = {c.name: "unseen setting" if c.name.rsplit("_G5", 1)[0] in dataset.UNSEEN_SETTINGS else "seen setting"
              for c in aligned}
    return {"rows": rows, "splits": splits}


JVM_STAGES = ("jvm-ddsp-spectral.yaml", "jvm-ddsp.yaml", "jvm-ddsp-circuit.yaml", "jvm-ddsp-final.yaml", "jvm-ddsp-esr.yaml",
              "jvm-ddsp-oversampled.yaml")


def _jvm_stage_runs(stages, recorded=()) -> list[dict]:
    """Each training stage's command, config, steps, minutes and history: the ``recorded`` ones (the first
    stages, as the metrics file holds them), then the rest from their ``report.json``, the last of which must
    have written the shipped weights. When every stage is recorded, nothing here ties the records to the
    weights: they are kept as they were."""
    from effects.training.train import load_config
    runs = list(recorded)
    if len(runs) > len(stages):
        raise ValueError(f"the metrics file records {len(runs)} training stages, the recipe has {len(stages)}")
    for i, (run, config) in enumerate(zip(runs, stages), 1):
        expected = f"knobnet train {_shown(ROOT / 'resources' / 'training' / config)}"
        if run.get("command") != expected:
            raise ValueError(f"stage {i} in the metrics file is '{run.get('command')}', the recipe's is '{expected}'")
    if len(runs) == len(stages):
        return runs
    for config in stages[len(runs):]:
        config = ROOT / "resources" / "training" / config
        out = pathlib.Path(load_config(config)["out"])
        if not (out / "report.json").is_file():
            raise FileNotFoundError(f"no report of {_shown(config)} at {_shown(out)}: run knobnet train {_shown(config)}")
        report = json.loads((out / "report.json").read_text())
        cfg = report["config"]
        for section, key in (("data", "folder"), ("train", "init_from"), (None, "out")):  # as the repo writes them
            where = cfg[section] if section else cfg
            if where.get(key):
                where[key] = _shown(pathlib.Path(where[key]))
        runs.append({"command": f"knobnet train {_shown(config)}", "config": cfg, "steps": report["steps"],
                     "minutes": round(report["train_seconds"] / 60, 1), "history": report["history"]})
    if (out / "model.npz").read_bytes() != SHIPPED_JVM.read_bytes():
        raise ValueError(f"{_shown(out / 'model.npz')} is not {_shown(SHIPPED_JVM)}: these runs did not make the shipped weights")
    return runs


def jvm_card_metrics(stages=JVM_STAGES, recorded_training: list | None = None) -> dict:
    """What ``resources/jvm/jvm_ddsp.metrics.json`` holds: every clip's metrics for the shipped weights
    (streaming model from its idle state, latency-aligned clips, with its split and its ESR by octave band),
    each training stage's config, steps, minutes and history (``_jvm_stage_runs``: ``recorded_training`` as
    the file already holds them, the stages after those from their reports), and the tone-stack circuit's
    calibration in the shipped weights (part values over nominal, tapers, end resistances)."""
    from effects.ddsp import amp, dataset, stream, tonestack
    runs = _jvm_stage_runs(stages, recorded_training or ())
    pairs = _jvm_pairs(_shipped_jvm_clips())
    scores = _score(_twin(SHIPPED_JVM, len(dataset.KNOBS)), pairs, bands=True)
    values = {k: np.asarray(v, np.float64) for k, v in amp.circuit_values(stream.load(SHIPPED_JVM)[0]).items()}
    circuit = {"part_over_nominal": {k: round(v / tonestack.PARTS[k], 4) for k, v in tonestack.part_values(values).items()},
               "taper_t2_t3": {k: [round(float(t), 4) for t in values["taper"][i]] for i, k in enumerate(tonestack.POTS)},
               "end_resistance": {k: round(float(tonestack.pot_position(0.0, k, values)), 5) for k in tonestack.POTS},
               "position_at_knob_0_to_10": {k: [round(float(v), 4) for v in tonestack.pot_position(np.arange(11.0), k, values)]
                                            for k in tonestack.POTS}}
    return {"clips": {p.name: dict(scores[p.name], split=p.split) for p in pairs}, "training": runs,
            "tone_stack_circuit": circuit}


def jvm_markdown(result) -> str:
    rows, splits = result["rows"], result["splits"]
    lines = ["# JVM 410H: DDSP amp vs Concat-GRU-8 vs Concat-GRU-48 on the same real data", "",
             "The DDSP paper's Table 1 structure, on knobnet's JVM data: 15 real 5 s clips at gain 5 and five tone "
             "settings, of which 11 train and 4 are held out (`effects/ddsp/dataset.py`): two clips of unseen tone "
             "settings (B3_M7_T1, B0_M0_T10) and one unseen clip of each of two trained settings. Figures are the "
             "streaming models (the kernels that play) over the whole held-out clips, each from its idle state at the "
             "clip's knobs; \"seen\"/\"unseen\" are the "
             "means over the two clips of each kind. ESR pre: with the pre-emphasis filter of the training loss. "
             "RTF: one thread, 128-sample blocks, every model timed in this one sitting (compare ratios).", "",
             "Reproduce (after `python -m effects.ddsp.dataset out/datasets/jvm` and `knobnet train` of "
             "resources/training/jvm-gru8.yaml and jvm-gru48.yaml; the shipped DDSP amp's training stages are in its "
             "model card): "
             "`python -m effects.training.compare --jvm`. What the figures say about the DDSP amp: "
             "resources/jvm/MODEL_CARD.md.", "",
             "| model | params | ops/sample | RTF @128 | ESR seen | ESR unseen | ESR pre seen | ESR pre unseen "
             "| MAE seen | MAE unseen | training |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def mean(r, key, split):
        return np.mean([m[key] for name, m in r["clips"].items() if splits[name] == split])
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['model']} | not trained (`{r['missing']}`) |" + " |" * 9)
            continue
        figures = " | ".join(f"{mean(r, k, s):.{4 if k == 'mae' else 3}f}" for k in ("esr", "esr_pre_emphasis", "mae")
                             for s in ("seen setting", "unseen setting"))
        lines.append(f"| {r['model']} | {r['params']:,} | {r['ops_per_sample']:,} | {r['rtf_128']:.0f}x | {figures} "
                     f"| {r['training']} |")
    trained = [r for r in rows if "missing" not in r]
    lines += ["", "Per clip (ESR / ESR pre / MAE):", "",
              "| clip | " + " | ".join(r["model"] for r in trained) + " |", "|---" * (len(trained) + 1) + "|"]
    for name, split in splits.items():
        cells = " | ".join("{esr:.3f} / {esr_pre_emphasis:.3f} / {mae:.3f}".format(**r["clips"][name]) for r in trained)
        lines.append(f"| {name} ({split}) | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jvm", action="store_true", help="the JVM table (docs/jvm-comparison.md) instead")
    parser.add_argument("--jvm-card", action="store_true",
                        help="write the shipped JVM weights' metrics (resources/jvm/jvm_ddsp.metrics.json) instead")
    parser.add_argument("--rescore", action="store_true",
                        help="with --jvm-card: score the shipped weights again, keep the training histories the "
                             "file holds (their runs need not be on this machine) and add the stages after them")
    parser.add_argument("--out", default=None, help="where to write (default: docs/..., or beside the JVM weights)")
    args = parser.parse_args(argv)
    if args.rescore and not args.jvm_card:
        parser.error("--rescore goes with --jvm-card")
    if args.jvm_card:
        path = pathlib.Path(args.out or SHIPPED_JVM.with_suffix(".metrics.json"))
        recorded = None
        if args.rescore:
            metrics_file = SHIPPED_JVM.with_suffix(".metrics.json")
            try:
                recorded = json.loads(metrics_file.read_text())["training"]
            except (OSError, ValueError, KeyError) as exc:
                parser.error(f"--rescore keeps the training histories of {_shown(metrics_file)}, which cannot be read ({exc})")
        path.write_text(json.dumps(jvm_card_metrics(recorded_training=recorded), indent=1) + "\n")
        print(f"wrote {path}")
        return
    if args.jvm:
        text, default = jvm_markdown(jvm_compare()), "jvm-comparison.md"
    else:
        text, default = markdown(compare()), "conditioning.md"
    args.out = args.out or str(ROOT / "docs" / default)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
