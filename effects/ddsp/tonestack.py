"""The JVM's tone-stack circuit, which the DDSP amp's tone stack is fitted to before it trains.

The recordings hold 3 tone settings for training (5 exist; resources/jvm/MODEL_CARD.md), too few to
learn from them how bass, middle and treble move the response. The amp's tone stack is a passive
Marshall TMB network whose parts are known (spec section 8, the grey-box model of the JVM [gb]):
slope resistor R1 33k, treble cap C1 470 pF, bass and middle caps C2 = C3 22 nF, treble pot RT
200k, bass pot RB 1M, middle pot RM 20k, loaded by R2 39k into the 1M volume pot. Its response
follows from nodal analysis (``circuit_response``); ``fit_tone_stack`` fits the DDSP tone stack
(LS, PK, HS biquads driven by the tone-stack controller, spec section 7) to it over a grid of
knob settings, and the ``ddsp`` model type keeps those parameters fixed while the rest of the amp
trains (``amp.build_ddsp``): the data teach the amp, the circuit teaches the knobs.

Wiring (Yeh & Smith's TMB; node names are ours): input -> C1 -> T; T -(1 - t) RT- out -t RT- X;
X -b RB- M; M -m RM- ground; input -R1- S; S -C2- X; S -C3- M; out -(R2 + RV)- ground. The pot
positions b, m, t in [0, 1] come from the panel knobs through the tapers of [gb]'s initialisation,
y = t1 tanh(t2 x + t3) + t4 with y(0) = 0 and y(1) = 1 (bass (4.4, -3.38), middle and treble
(1.79, -0.919)).

How well the circuit predicts the recordings: ``python -m effects.ddsp.tonestack`` compares, for every
two clips of the same input at different tone settings, the target's band levels (one difference
per band) with the circuit's (``recorded_against_circuit``). The pot's end resistance, POT_END, was
set on the training pairs only (B10_M0_T0 and B1_M3_T7, files 1-5): 1 % of the pot fits them best of
0.3-2 % (2.07 dB RMS; 0.01 % would be 2.47 dB and puts a 20k middle pot at 2 ohm).

Runs on the training thread (``knobnet train``), the CLI thread and, for ``circuit_response`` (the
inspector's reference curve), the GUI thread.
"""
from __future__ import annotations

import numpy as np

PARTS = {"R1": 33e3, "RT": 200e3, "RB": 1e6, "RM": 20e3, "C1": 470e-12, "C2": 22e-9, "C3": 22e-9,
         "R_LOAD": 39e3 + 1e6}
TAPERS = {"bass": (4.4, -3.38), "middle": (1.79, -0.919), "treble": (1.79, -0.919)}
POT_END = 0.01  # a pot's end resistance, as a fraction of its value (module doc)

#: The fit: knob settings 0, 1, .. 10 of bass, middle and treble, FIT_POINTS log-spaced frequencies.
FIT_KNOB_STEPS = np.linspace(0.0, 10.0, 11)
FIT_HZ = (40.0, 12000.0)
FIT_POINTS = 64
FIT_BATCH = 128


def pot_position(knob, kind: str):
    """Panel knob 0..10 -> pot position 0..1 through the taper of ``kind`` (module doc)."""
    t2, t3 = TAPERS[kind]
    t1 = 1.0 / (np.tanh(t2 + t3) - np.tanh(t3))
    y = t1 * np.tanh(t2 * np.asarray(knob, np.float64) / 10.0 + t3) - t1 * np.tanh(t3)
    return np.clip(y, POT_END, 1.0 - POT_END)


def circuit_response(freqs_hz, bass, middle, treble, parts=PARTS):
    """Complex response of the tone-stack circuit at ``freqs_hz`` (K,) for panel knobs (scalars 0..10).

    Solves the circuit's nodal equations Y v = i (nodes T, out, X, M, S; input at 1 V) per frequency.
    """
    b, m, t = pot_position(bass, "bass"), pot_position(middle, "middle"), pot_position(treble, "treble")
    s = 2j * np.pi * np.asarray(freqs_hz, np.float64)
    T, OUT, X, M, S = range(5)
    y = np.zeros(s.shape + (5, 5), np.complex128)
    i = np.zeros(s.shape + (5,), np.complex128)

    def between(a, c, adm):
        y[..., a, a] += adm
        if c is not None:
            y[..., c, c] += adm
            y[..., a, c] -= adm
            y[..., c, a] -= adm

    def from_input(a, adm):
        y[..., a, a] += adm
        i[..., a] += adm

    p = parts
    from_input(T, s * p["C1"])
    from_input(S, 1.0 / p["R1"])
    between(T, OUT, 1.0 / ((1.0 - t) * p["RT"]))
    between(OUT, X, 1.0 / (t * p["RT"]))
    between(X, M, 1.0 / (b * p["RB"]))
    between(M, None, 1.0 / (m * p["RM"]))
    between(S, X, s * p["C2"])
    between(S, M, s * p["C3"])
    between(OUT, None, 1.0 / p["R_LOAD"])
    return np.linalg.solve(y, i[..., None])[..., OUT, 0]


def fit_targets():
    """The fit's knob grid (N, 3) of bass, middle, treble, frequencies (K,) and circuit levels (N, K) in dB,
    less their mean (the amp's other gains set the level)."""
    grid = np.stack(np.meshgrid(FIT_KNOB_STEPS, FIT_KNOB_STEPS, FIT_KNOB_STEPS, indexing="ij"), -1).reshape(-1, 3)
    freqs = np.geomspace(*FIT_HZ, FIT_POINTS)
    db = np.stack([20.0 * np.log10(np.abs(circuit_response(freqs, *k))) for k in grid])
    return grid, freqs, db - db.mean()


def fit_tone_stack(params: dict, sample_rate: float, steps: int = 3000, log=None) -> tuple[dict, float]:
    """Parameters with the tone stack (its controller) fitted to the circuit.

    Adam on the mean squared dB error less its mean (one level for all settings is the other stages'
    to set) over ``fit_targets``' grid, FIT_BATCH settings a step drawn by a seeded generator
    (deterministic).

    Args:
        params: DDSP amp parameters (NumPy) by name; the other stages' are returned unchanged.
        sample_rate: in Hz.
        steps: optimiser steps.
        log: called with a progress line now and then, if given.
    Returns:
        (parameters, RMS error in dB over the grid).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only wait on each other (10x slower on a busy CPU)
    try:
        return _fit(params, sample_rate, steps, log)
    finally:
        torch.set_num_threads(threads)


def _fit(params: dict, sample_rate: float, steps: int, log) -> tuple[dict, float]:
    import torch

    from effects.ddsp import amp, biquad
    grid, freqs, target_db = fit_targets()
    names = [k for k in params if k.startswith(amp.TONE_STACK_PARAMS)]
    fitted = {k: torch.tensor(params[k], dtype=torch.float64, requires_grad=True) for k in names}
    panel = torch.zeros(len(grid), len(amp.KNOBS), dtype=torch.float64)
    panel[:, 0], panel[:, 4] = amp.RECORDED["gain"], amp.RECORDED["master"]
    panel[:, 1:4] = torch.as_tensor(grid)
    c_all = amp.normalise(panel, torch)
    w = torch.as_tensor(2.0 * np.pi * freqs / sample_rate)
    target = torch.as_tensor(target_db)
    opt = torch.optim.Adam(fitted.values(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(0)

    def errors(rows):
        design = amp.tone_stack_design(fitted, c_all[rows], sample_rate)
        h = biquad.response(amp.design_sos(design, sample_rate), w)
        return 20.0 * torch.log10(h.abs()) - target[rows]

    for step in range(steps):
        err = errors(torch.as_tensor(rng.choice(len(grid), FIT_BATCH, replace=False)))
        loss = (err - err.mean()).square().mean()  # the level is the other stages' to set
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and step % 500 == 0:
            log(f"tone stack fit to the circuit: step {step}/{steps}, RMS error {loss.item() ** 0.5:.2f} dB")
    with torch.no_grad():
        err = errors(slice(None))
        rms_db = float((err - err.mean()).square().mean().sqrt())
    out = dict(params)
    out.update({k: v.detach().numpy().copy() for k, v in fitted.items()})
    return out, rms_db


BAND_EDGES_HZ = np.geomspace(60.0, 12000.0, 22)  # 21 bands, about a third of an octave each


def band_levels_db(y, sample_rate: float) -> np.ndarray:
    """Level (dB) of y in each of the BAND_EDGES_HZ bands (Welch power spectrum, 8,192-point segments)."""
    from scipy.signal import welch
    f, p = welch(np.asarray(y, np.float64), sample_rate, nperseg=8192)
    return np.array([10.0 * np.log10(p[(f >= lo) & (f < hi)].mean()) for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:])])


def recorded_against_circuit(clips) -> list[dict]:
    """For every two clips of the same input at different tone settings: the change of the target's band
    levels from the first setting to the second, the circuit's, and the RMS of their difference less its
    mean (dB) - how far the circuit misses what the knobs did to the recorded amp (its power amp included).

    Args:
        clips: ``effects.ddsp.dataset.load_clips()``.
    Returns:
        [{from, to, file, split, recorded_db, circuit_db, misfit_db}], split "train" when both clips train.
    """
    centres = np.sqrt(BAND_EDGES_HZ[:-1] * BAND_EDGES_HZ[1:])
    by_input = {}
    for c in clips:
        setting, _, number = c["name"].partition("_G5_file_")
        by_input.setdefault(number, []).append((setting, c))
    rows = []
    for number, group in sorted(by_input.items()):
        for i, (a, ca) in enumerate(group):
            for b, cb in group[i + 1:]:
                recorded = band_levels_db(cb["y"], cb["sample_rate"]) - band_levels_db(ca["y"], ca["sample_rate"])
                circuit = 20.0 * np.log10(np.abs(circuit_response(centres, *(cb["knobs"][k] for k in ("bass", "middle", "treble"))))
                                          / np.abs(circuit_response(centres, *(ca["knobs"][k] for k in ("bass", "middle", "treble")))))
                miss = recorded - circuit
                rows.append({"from": a, "to": b, "file": number, "recorded_db": recorded, "circuit_db": circuit,
                             "split": "train" if ca["split"] == cb["split"] == "train" else "test",
                             "misfit_db": float(np.sqrt(np.mean(np.square(miss - miss.mean()))))})
    return rows


def main() -> None:
    import sys

    from effects.ddsp import dataset
    if not (dataset.DATA_DIR / "clips.json").is_file():
        sys.exit(f"tonestack: the JVM recordings are not at {dataset.DATA_DIR} (../shared/data/jvm410h)")
    rows = recorded_against_circuit(dataset.load_clips())
    centres = np.sqrt(BAND_EDGES_HZ[:-1] * BAND_EDGES_HZ[1:])
    print("band centres (Hz):    " + " ".join(f"{f:6.0f}" for f in centres))
    for r in rows:
        print(f"{r['from']} -> {r['to']}, file {r['file']} ({r['split']}): misfit {r['misfit_db']:.2f} dB")
        print("  recorded change (dB): " + " ".join(f"{v:6.1f}" for v in r["recorded_db"]))
        print("  circuit change (dB):  " + " ".join(f"{v:6.1f}" for v in r["circuit_db"]))


if __name__ == "__main__":
    main()
