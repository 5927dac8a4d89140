"""Train the DDSP amp on the JVM 410H recordings: ``python -m effects.ddsp.train``.

Holds out B3_M7_T1 and B0_M0_T10 entirely (unseen tone settings) and file 8 of the two settings
recorded six times (unseen clips of seen settings); trains on random 8,192-sample segments of the
other 11 clips (spec 7.6), loss = ESR + MAE + MR-STFT (FFT 128/512/2048, auraloss-style, all on
pre-emphasised signals) with the first 1,000 samples of each segment left out of the loss while
the zero-initialised state warms up. Adam, ReduceLROnPlateau(0.5, ``--patience``) on the epoch's
training loss, gradient clipping at 3. A checkpoint is written every epoch (``--resume`` goes
on from it) and the run stops at ``--minutes``. Finally the streaming twin (exact IIR) is run
over every whole clip and the metrics of ``metrics`` are written next to the weights.

Runs on its own thread/process; use one torch thread on shared machines (``--threads``).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

from effects.ddsp import amp
from effects.ddsp.stream import AmpStream, save
from effects.modelfile import RESOURCES_DIR, shared_path
from effects.progress import Progress

DATA_DIR = shared_path("data", "jvm410h")
HOLDOUT = ("B3_M7_T1_G5_file_7", "B0_M0_T10_G5_file_7", "B10_M0_T0_G5_file_8", "B1_M3_T7_G5_file_8")
WEIGHTS = RESOURCES_DIR / "jvm" / "jvm_ddsp.npz"
WARMUP = 1000


def load_clips(data_dir=DATA_DIR):
    """[(name, knobs (5,), input (T,), target (T,))] from clips.json; master is unrecorded (5)."""
    import soundfile as sf
    data_dir = pathlib.Path(data_dir)
    clips = []
    for c in json.loads((data_dir / "clips.json").read_text())["clips"]:
        x, sr = sf.read(data_dir / c["input"], dtype="float32")
        y, _ = sf.read(data_dir / c["target"], dtype="float32")
        k = c["knobs"]
        knobs = np.array([k["gain"], k["bass"], k["middle"], k["treble"], 5.0])
        clips.append((c["input"].removesuffix("_input.wav"), knobs, x, y, sr))
    return clips


# ---- metrics (NumPy, spec 1.3) ----
def pre_emphasis(x: np.ndarray) -> np.ndarray:
    """[pnfx] DC_PreEmph: 2000-tap FIR of (1 - z^-1)/(1 - 0.995 z^-1), applied causally."""
    from scipy.signal import lfilter
    h = np.empty(2000)
    h[0] = 1.0
    h[1:] = -0.005 * 0.995 ** np.arange(1999)
    return lfilter(h, [1.0], x)


def mrstft_pnfx(y: np.ndarray, y_hat: np.ndarray) -> float:
    """[pnfx] MR-STFT on power spectra: mean L_lin over scales + mean L_log over scales."""
    lin, log = [], []
    for n in (2048, 512, 128, 32):
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))
        hop = n // 4
        frames = np.lib.stride_tricks.sliding_window_view

        def power(s):
            return np.abs(np.fft.rfft(frames(s, n)[::hop] * w, axis=-1)) ** 2
        p, p_hat = power(y), power(y_hat)
        lin.append(np.mean(np.abs(p - p_hat)))
        log.append(np.mean(np.abs(np.log(p + 1e-4) - np.log(p_hat + 1e-4))))
    return float(np.mean(lin) + np.mean(log))


def metrics(y: np.ndarray, y_hat: np.ndarray) -> dict:
    """ESR with pre-emphasis (eps 1e-12) and without (eps 1e-5), MAE, MR-STFT (pre-emphasised)."""
    y, y_hat = y.astype(np.float64), y_hat.astype(np.float64)
    yp, yp_hat = pre_emphasis(y), pre_emphasis(y_hat)
    return {
        "esr_pre": float(np.mean((yp - yp_hat) ** 2) / (np.mean(yp ** 2) + 1e-12)),
        "esr": float(np.mean((y - y_hat) ** 2) / (np.mean(y ** 2) + 1e-5)),
        "mae": float(np.mean(np.abs(y - y_hat))),
        "mrstft": mrstft_pnfx(yp, yp_hat),
    }


def evaluate(params: dict, clips, sample_rate: float) -> dict:
    """Stream every whole clip through the streaming twin; metrics per clip name."""
    s = AmpStream(params, sample_rate)
    out = {}
    for name, knobs, x, y, _ in clips:
        s.reset()
        s.configure(knobs)
        y_hat = np.empty_like(x)
        s.run(x, y_hat)
        out[name] = metrics(y, y_hat)
    return out


# ---- training (torch) ----
def _losses(torch, stft_weight: float):
    n_fft = 16384
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (2 * math.pi / n_fft)
    z1 = torch.exp(-1j * k)
    pre_h = ((1 - z1) / (1 - 0.995 * z1)).to(torch.complex64)
    windows = {n: torch.hann_window(n) for n in (128, 512, 2048)}

    def pre(v):
        return torch.fft.irfft(torch.fft.rfft(v, n_fft) * pre_h, n_fft)[..., :v.shape[-1]]

    def loss(y_hat, y):
        y_hat, y = pre(y_hat)[..., WARMUP:], pre(y)[..., WARMUP:]
        esr = ((y - y_hat) ** 2).mean() / ((y ** 2).mean() + 1e-8)
        mae = (y - y_hat).abs().mean()
        stft = 0.0
        for n, w in windows.items():
            Y = torch.stft(y, n, n // 4, window=w, return_complex=True).abs().clamp_min(1e-4)
            Yh = torch.stft(y_hat, n, n // 4, window=w, return_complex=True).abs().clamp_min(1e-4)
            stft = stft + (Y - Yh).norm() / Y.norm() + (Y.log() - Yh.log()).abs().mean()
        return esr + mae + stft_weight * stft / len(windows), esr
    return loss


def train(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    clips = load_clips(args.data)
    sample_rate = clips[0][4]
    train_clips = [c for c in clips if c[0] not in HOLDOUT]
    model = amp.DDSPAmp(amp.init_params(args.seed), sample_rate)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=args.patience)
    ckpt = pathlib.Path(args.checkpoint)
    epoch, elapsed, history = 0, 0.0, []
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        epoch, elapsed, history = state["epoch"], state["elapsed_s"], state["history"]
        rng = np.random.default_rng(args.seed + epoch)
        print(f"resumed at epoch {epoch} after {elapsed / 60:.1f} min", flush=True)
    loss_fn = _losses(torch, args.stft_weight)
    seg = args.segment
    per_clip = max(1, len(train_clips[0][2]) // seg)
    log = open(args.log, "a") if args.log else None
    t_start = time.time() - elapsed
    while epoch < args.epochs and time.time() - t_start < args.minutes * 60:
        # Random crops: per_clip segments from every training clip, shuffled into batches.
        items = [(ci, int(rng.integers(0, len(c[2]) - seg))) for ci, c in enumerate(train_clips) for _ in range(per_clip)]
        order = rng.permutation(len(items))
        n_batches = math.ceil(len(items) / args.batch)
        total, total_esr = 0.0, 0.0
        with Progress(n_batches, f"epoch {epoch + 1}", "batches") as bar:
            for b in range(n_batches):
                pick = [items[i] for i in order[b * args.batch:(b + 1) * args.batch]]
                x = torch.from_numpy(np.stack([train_clips[ci][2][s:s + seg] for ci, s in pick]))
                y = torch.from_numpy(np.stack([train_clips[ci][3][s:s + seg] for ci, s in pick]))
                knobs = torch.from_numpy(np.stack([train_clips[ci][1] for ci, _ in pick])).float()
                loss, esr = loss_fn(model(x, knobs), y)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
                opt.step()
                total += loss.item()
                total_esr += esr.item()
                bar.update(b + 1, extra=f"loss {total / (b + 1):.4f} esr {total_esr / (b + 1):.4f} "
                                        f"{(time.time() - t_start) / 60:.1f} min")
        epoch += 1
        sched.step(total / n_batches)
        history.append({"epoch": epoch, "loss": total / n_batches, "esr_pre": total_esr / n_batches,
                        "lr": opt.param_groups[0]["lr"], "minutes": (time.time() - t_start) / 60})
        line = json.dumps(history[-1])
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch, "elapsed_s": time.time() - t_start, "history": history}, ckpt)
    params = model.numpy_params()
    minutes = (time.time() - t_start) / 60
    results = evaluate(params, clips, sample_rate)
    meta = {"data": "jvm410h (15 real 5 s clips, gain 5)", "holdout": list(HOLDOUT), "epochs": epoch,
            "train_minutes": round(minutes, 1), "command": " ".join(sys.argv), "seed": args.seed}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(out, params, sample_rate, meta)
    out.with_suffix(".metrics.json").write_text(json.dumps({"meta": meta, "clips": results, "history": history}, indent=1))
    print(f"{'clip':24s} {'split':8s} {'ESR pre':>8s} {'ESR':>8s} {'MAE':>8s} {'MRSTFT':>8s}")
    for name, m in results.items():
        split = "held-out" if name in HOLDOUT else "train"
        print(f"{name:24s} {split:8s} {m['esr_pre']:8.4f} {m['esr']:8.4f} {m['mae']:8.4f} {m['mrstft']:8.3f}")
    print(f"wrote {out} after {epoch} epochs, {minutes:.1f} min", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA_DIR), help="folder with clips.json and the WAV pairs")
    ap.add_argument("--out", default=str(WEIGHTS), help="weights file to write (.npz)")
    ap.add_argument("--checkpoint", default=str(pathlib.Path.home() / ".cache" / "knobnet" / "jvm_checkpoint.pt"), help="checkpoint written every epoch")
    ap.add_argument("--resume", action="store_true", help="go on from --checkpoint")
    ap.add_argument("--log", default="", help="append one JSON line per epoch here")
    ap.add_argument("--minutes", type=float, default=35.0, help="stop after this much training time")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--segment", type=int, default=8192, help="segment length in samples")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--stft-weight", type=float, default=1.0, help="weight of the MR-STFT loss term")
    ap.add_argument("--patience", type=int, default=4, help="epochs without improvement before halving the LR")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
