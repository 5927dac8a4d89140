"""``knobnet bench``: real-time factor, params and ops/sample of every pedal and of the chain.

Runs on the CLI's main thread, one thread of compute (numba kernels are single-threaded).
Real-time factor = seconds of audio processed per second of wall time, best of ``repeats``, while
playing with the knobs still: after a reset (and for up to 0.37 s after a knob move) a pedal also runs
its silent twin (``effects.rest.SilentTwin``) at up to twice the cost, which the untimed warm-up
leaves behind.
"""
from __future__ import annotations

import time

import numpy as np

from effects import Chain, ModelFileError, list_pedals, load_pedal
from effects.progress import Progress

BLOCK_SIZES = (32, 64, 128, 512, 2048)


def bench_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """A deterministic guitar-like signal: decaying plucked chords at a playing level."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = np.zeros_like(t)
    for start, root in zip(np.arange(0, seconds, 0.5), (82.4, 110.0, 146.8, 98.0) * 100):
        env = np.where(t >= start, np.exp(-(t - start) * 5.0), 0.0)
        for ratio in (1.0, 1.5, 2.0):
            for k in range(1, 6):
                x += env * np.sin(2 * np.pi * root * ratio * k * (t - start)) / k
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


WARM_UP_SECONDS = 0.5  # past the silent twins' run after a reset (16,384 samples at 44.1 kHz at most)


def real_time_factor(processor, sample_rate: int, block_size: int, seconds: float, repeats: int = 3) -> float:
    x = bench_signal(sample_rate, seconds)
    out = np.empty(block_size, np.float32)
    processor.reset()
    warm_up = x[:int(WARM_UP_SECONDS * sample_rate)]  # also compiles and sizes buffers
    for i in range(0, warm_up.shape[0] - block_size + 1, block_size):
        processor.process(warm_up[i:i + block_size], out)
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(0, x.shape[0] - block_size + 1, block_size):
            processor.process(x[i:i + block_size], out)
        best = min(best, time.perf_counter() - started)
    return (x.shape[0] // block_size * block_size / sample_rate) / best


def run_bench(names=None, models=None, seconds: float = 2.0, block_sizes=BLOCK_SIZES) -> list[dict]:
    """Benchmark each named pedal (default: all registered) and the chain of them, in order."""
    models = models or {}
    names = names or [cls.name for cls in list_pedals()]
    pedals, rows = [], []
    for name in names:
        try:
            pedals.append(load_pedal(name, model_path=models.get(name)))
        except ModelFileError as exc:
            rows.append({"name": name, "error": str(exc)})
    targets = [(p.name, p, p.sample_rate, p.info()) for p in pedals]
    if len(pedals) > 1:
        chain = Chain(pedals)
        infos = [p.info() for p in pedals]
        targets.append(("chain: " + " > ".join(p.name for p in pedals), chain, chain.sample_rate,
                        {"params": sum(i["params"] for i in infos),
                         "ops_per_sample": sum(i["ops_per_sample"] for i in infos)}))
    with Progress(len(targets) * len(block_sizes), "benchmarking", "runs") as bar:
        for k, (label, proc, rate, info) in enumerate(targets):
            row = {"name": label, "sample_rate": rate, "params": int(info["params"]),
                   "ops_per_sample": int(info["ops_per_sample"]), "rtf": {}}
            for j, bs in enumerate(block_sizes):
                row["rtf"][bs] = real_time_factor(proc, rate, bs, seconds)
                bar.update(k * len(block_sizes) + j + 1)
            rows.append(row)
    return rows


def format_table(rows: list[dict], block_sizes=BLOCK_SIZES) -> str:
    head = f"{'pedal':<28} {'rate':>6} {'params':>8} {'ops/smp':>8} " + " ".join(f"{'rtf@' + str(b):>9}" for b in block_sizes)
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<28} not available: {r['error']}")
            continue
        lines.append(f"{r['name']:<28} {r['sample_rate']:>6} {r['params']:>8,} {r['ops_per_sample']:>8,} "
                     + " ".join(f"{r['rtf'][b]:>8.1f}x" for b in block_sizes))
    lines.append("rtf = seconds of audio per second of wall time, one thread, best of 3")
    return "\n".join(lines)
