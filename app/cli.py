"""The ``knobnet`` command: the pedalboard app, and ``pedals``, ``render`` and ``bench``.

Runs on the main thread. Errors the user can fix print one line ``knobnet: error: ...`` and exit 1;
usage errors exit 2 (argparse).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

USAGE_EXAMPLES = """examples:
  knobnet                                   open the pedalboard
  knobnet pedals                            list pedals and their knobs
  knobnet render in.wav out.wav --chain "od3 drive=6 tone=3 level=5"
  knobnet bench --json
"""


def parse_chain(spec: str) -> list[tuple[str, dict[str, str]]]:
    """Parse ``"od3 drive=6 tone=3 | la2a peak_reduction=40"`` into [(name, {knob: value})]."""
    stages = []
    for segment in spec.split("|"):
        words = segment.split()
        if not words:
            raise ValueError(f"malformed --chain {spec!r}: empty pedal between '|'")
        name, knobs = words[0], {}
        if "=" in name:
            raise ValueError(f"malformed --chain segment {segment.strip()!r}: it must start with a pedal name")
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep or not key or not value:
                raise ValueError(f"malformed --chain segment {segment.strip()!r}: expected knob=value, got {word!r}")
            if key in knobs:
                raise ValueError(f"malformed --chain segment {segment.strip()!r}: knob '{key}' given twice")
            knobs[key] = value
        stages.append((name, knobs))
    return stages


def _knob_value(text: str):
    try:
        return float(text)
    except ValueError:
        return text  # a switch position by name, e.g. mode=limit


def parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model takes PEDAL=PATH, got {item!r}")
        models[name] = path
    return models


def build_chain(spec: str, models: dict[str, str]):
    from effects import Chain, load_pedal, list_pedals
    stages = parse_chain(spec)
    known = {cls.name for cls in list_pedals()}
    for name in models:
        if name not in known:
            raise ValueError(f"--model names unknown pedal '{name}' (known: {', '.join(sorted(known))})")
    pedals = []
    for name, knobs in stages:
        pedal = load_pedal(name, model_path=models.get(name))
        pedal.set_knobs(**{k: _knob_value(v) for k, v in knobs.items()})
        pedals.append(pedal)
    return Chain(pedals)


def cmd_pedals(args) -> int:
    from effects import list_pedals
    for cls in list_pedals():
        print(f"{cls.name:<6} {cls.description}  [{cls.sample_rate} Hz]")
        for k in cls.knobs:
            rng = "/".join(k.choices) if k.choices else f"{k.minimum:g}..{k.maximum:g}"
            unit = f" {k.unit}" if k.unit else ""
            print(f"         {k.name:<16} {rng:<18} default {k.describe(k.default)}{unit if not k.choices else ''}")
    return 0


def cmd_render(args) -> int:
    from effects.progress import Progress
    from effects.render import render_file
    if args.block_size < 1:
        raise ValueError(f"--block-size must be at least 1, got {args.block_size}")
    chain = build_chain(args.chain, parse_models(args.model))
    with Progress(1, "rendering", "s of audio") as bar:
        def progress(done, total, elapsed):
            bar.total = total / chain.sample_rate
            bar.update(done / chain.sample_rate, extra=f"{done / chain.sample_rate / max(elapsed, 1e-9):.1f}x real time")
        render_file(chain, args.input, args.output, args.block_size, progress,
                    notify=lambda note: print(f"knobnet: {note}", file=sys.stderr))
    print(f"rendered {args.input} -> {args.output} through " + " > ".join(repr(p) for p in chain))
    return 0


def cmd_bench(args) -> int:
    from app.bench import format_table, run_bench
    # One thread of compute. numba.set_num_threads, not the NUMBA_NUM_THREADS variable: numba rereads that
    # variable at every compile and refuses a new value once its threads run (a crash in a long-lived process).
    import numba
    numba.set_num_threads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    rows = run_bench(args.pedals or None, parse_models(args.model), seconds=args.seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_train(args) -> int:
    from effects.training.train import train
    report = train(args.config, resume=args.resume or args.finish, finish_now=args.finish,
                   log=lambda msg: print(msg, file=sys.stderr))
    if report is not None:
        out = report["config"]["out"]
        mean = report["test_mean"]
        print(f"trained {report['name']}: {report['params']:,} params, {report['ops_per_sample']:,} ops/sample, "
              f"{report['rtf_at_128']:.1f}x real time; test ESR {mean.get('esr', float('nan')):.4f}; "
              f"weights {out}/model.npz, report {out}/report.md")
    return 0


def cmd_distill(args) -> int:
    from effects.training.distill import distill
    names, limits = [], {}
    for item in args.knobs.split(","):
        name, _, span = item.partition("=")
        names.append(name.strip())
        if "=" in item:
            try:
                low, high = (float(v) for v in span.split(":"))
            except ValueError:
                raise ValueError(f"--knobs: '{item}' should read name=LOW:HIGH, e.g. peak_reduction=50:100") from None
            limits[name.strip()] = (low, high)
    default_splits = (0, 0) if args.append else (20, 16)  # appended pairs train; the splits stay as they were
    folder = distill(args.teacher, args.folder, names, train_settings=args.settings,
                     seconds_per_setting=args.seconds, seed=args.seed, teacher_path=args.model,
                     valid_settings=default_splits[0] if args.valid_settings is None else args.valid_settings,
                     test_settings=default_splits[1] if args.test_settings is None else args.test_settings,
                     dynamics=args.dynamics, knob_limits=limits, append=args.append)
    print(f"wrote a dataset of {args.teacher}'s outputs to {folder}")
    return 0


def cmd_check_data(args) -> int:
    from effects.training.data import check_report, load_dataset
    print(check_report(load_dataset(args.folder, max_latency_ms=args.max_latency_ms)))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knobnet", description="Conditioned neural models of real gear, with real knobs.",
                                     epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshot", metavar="PATH", help="open the board, let the scopes draw, save a PNG and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("pedals", help="list pedals with their knobs, ranges, defaults and units")
    r = sub.add_parser("render", help="render a WAV file through a chain of pedals")
    r.add_argument("input", help="input audio file (mono or stereo, any rate, 16/24/32-bit int or float)")
    r.add_argument("output", help="output WAV (input's rate, 32-bit float)")
    r.add_argument("--chain", required=True, help='pedals separated by "|", e.g. "od3 drive=6 tone=3 | la2a"')
    r.add_argument("--model", action="append", metavar="PEDAL=PATH", help="weights file for a pedal (repeatable)")
    r.add_argument("--block-size", type=int, default=4096, help="samples per processing block (default 4096)")
    b = sub.add_parser("bench", help="real-time factor, params and ops/sample per pedal and for the chain")
    b.add_argument("pedals", nargs="*", help="pedals to measure (default: all)")
    b.add_argument("--model", action="append", metavar="PEDAL=PATH", help="weights file for a pedal (repeatable)")
    b.add_argument("--seconds", type=float, default=2.0, help="seconds of audio per measurement (default 2)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t = sub.add_parser("train", help="train a conditioned model from a YAML config (see effects/training/train.py)")
    t.add_argument("config", help="training config (YAML)")
    t.add_argument("--resume", action="store_true", help="go on from the run's last checkpoint")
    t.add_argument("--finish", action="store_true", help="stop here: export and report the best weights of the last checkpoint")
    s = sub.add_parser("distill", help="make a training dataset by running a teacher model on varied guitar input")
    s.add_argument("teacher", help="teacher pedal, e.g. od3")
    s.add_argument("folder", help="dataset folder to write")
    s.add_argument("--knobs", required=True,
                   help="comma-separated knobs to sample uniformly, e.g. drive,tone; name=LOW:HIGH samples part "
                        "of a knob's range, e.g. peak_reduction=50:100")
    s.add_argument("--model", help="teacher weights file (default: the pedal's default)")
    s.add_argument("--settings", type=int, default=300, help="training knob settings (default 300)")
    s.add_argument("--seconds", type=float, default=2.0, help="seconds of audio per setting (default 2)")
    s.add_argument("--valid-settings", type=int, help="validation knob settings (default 20; 0 with --append)")
    s.add_argument("--test-settings", type=int, help="test knob settings, on held-out DI (default 16; 0 with --append)")
    s.add_argument("--dynamics", action="store_true",
                   help="vary the level within pairs (level envelopes, gaps, dynamics phrases): for compressors")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--append", action="store_true",
                   help="add training pairs (named after --seed) to the folder's dataset instead of replacing it")
    d = sub.add_parser("check-data", help="validate a dataset folder and report levels and input/target latency")
    d.add_argument("folder", help="folder with dataset.json and its WAV pairs")
    d.add_argument("--max-latency-ms", type=float, default=5.0, help="misalignment beyond this is an error")
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"knobnet: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    warnings.showwarning = _one_line_warnings
    from effects.audio_io import AudioFileError
    from effects.pedal import ModelFileError
    try:
        if args.command is None:
            from app.gui import run_gui
            return run_gui(screenshot=args.screenshot)
        return {"pedals": cmd_pedals, "render": cmd_render, "bench": cmd_bench, "train": cmd_train,
                "distill": cmd_distill, "check-data": cmd_check_data}[args.command](args)
    except (ValueError, ModelFileError, AudioFileError, OSError) as exc:
        print(f"knobnet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("knobnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
