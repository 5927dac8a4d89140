"""The JVM's tone-stack circuit, which the DDSP amp's tone stack is fitted to before it trains.

The recordings hold 3 tone settings for training (5 exist; resources/jvm/MODEL_CARD.md), too few to
learn from them how bass, middle and treble move the response. The amp's tone stack is a passive
Marshall TMB network whose parts are known (spec section 8, the grey-box model of the JVM [gb]):
slope resistor R1 33k, treble cap C1 470 pF, bass and middle caps C2 = C3 22 nF, treble pot RT
200k, bass pot RB 1M, middle pot RM 20k, loaded by R2 39k into the 1M volume pot (R_VOLUME). Its response
follows from nodal analysis (``circuit_response``); ``fit_tone_stack`` fits the DDSP tone stack
(LS, PK, HS biquads driven by the tone-stack controller, spec section 7) to it over a grid of
knob settings, and the ``ddsp`` model type keeps those parameters fixed while the rest of the amp
trains (``amp.build_ddsp``): the data teach the amp, the circuit teaches the knobs.

Wiring (Yeh & Smith's TMB; node names are ours): input -> C1 -> T; T -(1 - t) RT- out -t RT- X;
X -b RB- M; M -m RM- ground; input -R1- S; S -C2- X; S -C3- M; out -(R2 + RV)- ground. The pot
positions b, m, t in [e, 1 - e] come from the panel knobs x through the tapers of [gb]'s initialisation,
y = t1 tanh(t2 x + t3) + t4 with y(0) = 0 and y(1) = 1 (bass (4.4, -3.38), middle and treble
(1.79, -0.919)), as e + (1 - 2 e) y: each end of the track adds the pot's end resistance e.

How well the circuit predicts the recordings: ``python -m effects.ddsp.tonestack`` compares, for every
two clips of the same input at different tone settings, the target's band levels (one difference
per band) with the circuit's (``recorded_against_circuit``). The end resistance, POT_END, was set on
the training pairs only (B10_M0_T0 and B1_M3_T7, files 1-5): 1 % of the pot fits them within 0.02 dB
of the best of 0.3-5 % (2.01 dB RMS; 0.75 % 1.99; 0.3 % 2.25; 3 % 3.77).

The circuit's *calibration* (``nominal_values``: part values within TOLERANCE, tapers, end resistances)
can train with the amp (model option ``tone_stack: circuit``, ``effects.ddsp.amp``), as [gb] trains its
circuit's; the tone stack's biquads are then refitted to the calibrated circuit.

Runs on the training thread (``knobnet train``), the CLI thread and, for ``circuit_response`` (the
inspector's reference curve), the GUI thread.
"""
from __future__ import annotations

import functools

import numpy as np

PARTS = {"R1": 33e3, "RT": 200e3, "RB": 1e6, "RM": 20e3, "R2": 39e3, "C1": 470e-12, "C2": 22e-9, "C3": 22e-9}
R_VOLUME = 1e6  # the volume pot after R2, at full ([gb]); not calibrated
TAPERS = {"bass": (4.4, -3.38), "middle": (1.79, -0.919), "treble": (1.79, -0.919)}
POTS = ("bass", "middle", "treble")
POT_END = 0.01  # a pot's end resistance, as a fraction of its value (module doc)
POT_END_MAX = 0.2  # the most a calibration may make of it
TOLERANCE = 0.2  # calibrated part values stay within nominal x (1 +- TOLERANCE) ([gb]'s 0.8 + 0.4 sigmoid)

#: The fit: knob settings 0, 1, .. 10 of bass, middle and treble, FIT_POINTS log-spaced frequencies.
FIT_KNOB_STEPS = np.linspace(0.0, 10.0, 11)
FIT_HZ = (40.0, 12000.0)
FIT_POINTS = 64
FIT_BATCH = 128


def nominal_values() -> dict[str, np.ndarray]:
    """The circuit's calibration at its nominal parts and [gb]'s initial tapers: ``part_alpha`` (8,),
    one per PARTS entry, value = nominal x (1 - TOLERANCE + 2 TOLERANCE sigmoid(alpha)), 0 = nominal;
    ``taper`` (3, 2): (t2, t3) of bass, middle, treble (``pot_position``); ``end_alpha`` (3,): each pot's
    end resistance POT_END x exp(alpha), at most POT_END_MAX (the taper alone cannot move a position held
    at the end: bass 0 to 2 all sit there at [gb]'s bass taper)."""
    return {"part_alpha": np.zeros(len(PARTS)), "taper": np.array([TAPERS[k] for k in POTS], np.float64),
            "end_alpha": np.zeros(len(POTS))}


def _xp(a):
    return np if isinstance(a, np.ndarray) else __import__("torch")


def part_values(values) -> dict:
    """Part name -> value (ohm or farad) of a calibration (``nominal_values``)."""
    xp = _xp(values["part_alpha"])
    scale = 1.0 - TOLERANCE + 2.0 * TOLERANCE / (1.0 + xp.exp(-values["part_alpha"]))
    return {name: nominal * scale[i] for i, (name, nominal) in enumerate(PARTS.items())}


def pot_position(knob, kind: str, values=None):
    """Panel knob 0..10 -> pot position 0..1 through the taper of ``kind`` (module doc) in the
    calibration ``values`` (default: nominal). NumPy or torch, as ``values`` is."""
    if values is None:
        t2, t3 = TAPERS[kind]
        xp, end = np, POT_END
    else:
        t2, t3 = values["taper"][POTS.index(kind)]
        xp = _xp(values["taper"])
        end = POT_END * xp.exp(values["end_alpha"][POTS.index(kind)])
        end = np.minimum(end, POT_END_MAX) if xp is np else end.clamp(max=POT_END_MAX)
    t1 = 1.0 / (xp.tanh(t2 + t3) - xp.tanh(t3))
    y = t1 * xp.tanh(t2 * knob / 10.0 + t3) - t1 * xp.tanh(t3)
    return end + (1.0 - 2.0 * end) * y  # the end resistance in series with the track


def circuit_response(freqs_hz, bass, middle, treble, values=None):
    """Complex response of the tone-stack circuit at ``freqs_hz`` (K,) for panel knobs 0..10.

    Solves the circuit's nodal equations Y v = i (nodes T, out, X, M, S; input at 1 V) per frequency.
    The knobs are scalars, or arrays of one shape (...,) for (..., K) responses; with ``values`` (a
    calibration, ``nominal_values``' layout) as torch tensors it is differentiable in them.
    """
    if values is None:
        values = nominal_values()
        xp = np
        knobs = [np.asarray(k, np.float64) for k in (bass, middle, treble)]
    else:
        xp = _xp(values["part_alpha"])
        like = values["taper"]
        knobs = [xp.as_tensor(k, dtype=like.dtype, device=like.device) if xp is not np else np.asarray(k, np.float64)
                 for k in (bass, middle, treble)]
    b, m, t = (pot_position(k, kind, values)[..., None] for k, kind in zip(knobs, POTS))
    p = part_values(values)
    if xp is np:
        s = 2j * np.pi * np.asarray(freqs_hz, np.float64)
    else:
        s = 2j * np.pi * xp.as_tensor(freqs_hz, dtype=xp.float64, device=values["taper"].device).to(xp.complex128)
    zero = 0.0 * (s + b + m + t)  # (..., K), complex
    T, OUT, X, M, S = range(5)
    y = [[zero] * 5 for _ in range(5)]
    i = [zero] * 5

    def between(a, c, adm):
        y[a][a] = y[a][a] + adm
        if c is not None:
            y[c][c] = y[c][c] + adm
            y[a][c] = y[a][c] - adm
            y[c][a] = y[c][a] - adm

    def from_input(a, adm):
        y[a][a] = y[a][a] + adm
        i[a] = i[a] + adm

    from_input(T, s * p["C1"])
    from_input(S, 1.0 / p["R1"] + zero)
    between(T, OUT, 1.0 / ((1.0 - t) * p["RT"]))
    between(OUT, X, 1.0 / (t * p["RT"]))
    between(X, M, 1.0 / (b * p["RB"]))
    between(M, None, 1.0 / (m * p["RM"]))
    between(S, X, s * p["C2"])
    between(S, M, s * p["C3"])
    between(OUT, None, 1.0 / (p["R2"] + R_VOLUME))
    y_mat = xp.stack([xp.stack(row, -1) for row in y], -2)
    return xp.linalg.solve(y_mat, xp.stack(i, -1)[..., None])[..., OUT, 0]


def _grid_db(values=None):
    """The fit's knob grid (N, 3) of bass, middle, treble, frequencies (K,) and the circuit's levels (N, K)
    in dB in the calibration ``values`` (default nominal)."""
    grid = np.stack(np.meshgrid(FIT_KNOB_STEPS, FIT_KNOB_STEPS, FIT_KNOB_STEPS, indexing="ij"), -1).reshape(-1, 3)
    freqs = np.geomspace(*FIT_HZ, FIT_POINTS)
    return grid, freqs, 20.0 * np.log10(np.abs(circuit_response(freqs, grid[:, 0], grid[:, 1], grid[:, 2], values)))


def fit_targets(values=None):
    """``_grid_db`` less its mean level (the amp's other gains set the level)."""
    grid, freqs, db = _grid_db(values)
    return grid, freqs, db - db.mean()


@functools.lru_cache(maxsize=1)
def nominal_mean_db() -> float:
    """The nominal circuit's mean level (dB) over the fit's grid, which ``fit_targets`` removes."""
    return float(_grid_db()[2].mean())


def fit_tone_stack(params: dict, sample_rate: float, steps: int = 3000, log=None, values=None,
                   level_db: float | None = None) -> tuple[dict, float]:
    """Parameters with the tone stack (its controller) fitted to the circuit (calibrated by ``values``,
    ``nominal_values``' layout in NumPy; default nominal).

    Adam on the mean squared dB error over ``fit_targets``' grid, FIT_BATCH settings a step drawn by a
    seeded generator (deterministic). Without ``level_db`` the error is taken less its mean (one level
    for all settings is the other stages' to set); with it the biquads are fitted to the circuit at
    that level relative to the nominal circuit's mean (``tone_stack_level_db``), which keeps a trained
    amp's level when its tone stack is refitted to a calibration.

    Args:
        params: DDSP amp parameters (NumPy) by name; the other stages' are returned unchanged.
        sample_rate: in Hz.
        steps: optimiser steps.
        log: called with a progress line now and then, if given.
        values: the circuit's calibration (default nominal).
        level_db: the level to fit at, or None (level-free).
    Returns:
        (parameters, RMS error in dB over the grid).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only wait on each other (10x slower on a busy CPU)
    try:
        return _fit(params, sample_rate, steps, log, values, level_db)
    finally:
        torch.set_num_threads(threads)


def _fit(params: dict, sample_rate: float, steps: int, log, values, level_db) -> tuple[dict, float]:
    import torch

    from effects.ddsp import amp, biquad
    if level_db is None:
        grid, freqs, target_db = fit_targets(values)
    else:
        grid, freqs, target_db = _grid_db(values)
        target_db = target_db - nominal_mean_db() + level_db
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
        loss = (err - err.mean() if level_db is None else err).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and step % 500 == 0:
            log(f"tone stack fit to the circuit: step {step}/{steps}, RMS error {loss.item() ** 0.5:.2f} dB")
    with torch.no_grad():
        err = errors(slice(None))
        rms_db = float((err - err.mean() if level_db is None else err).square().mean().sqrt())
    out = dict(params)
    out.update({k: v.detach().numpy().copy() for k, v in fitted.items()})
    return out, rms_db


def tone_stack_level_db(params: dict, sample_rate: float, values=None) -> float:
    """The level (dB) of the tone stack's biquads in ``params`` over the fit's grid, relative to the circuit
    (calibration ``values``, default nominal) less the nominal circuit's mean level: the level at which a
    level-free fit left them, which the rest of the amp trained around."""
    from effects.ddsp import amp, biquad
    grid, freqs, circuit_db = _grid_db(values)
    panel = np.zeros((len(grid), len(amp.KNOBS)))
    panel[:, 0], panel[:, 4], panel[:, 1:4] = amp.RECORDED["gain"], amp.RECORDED["master"], grid
    sos = amp.design_sos(amp.tone_stack_design(params, amp.normalise(panel), sample_rate), sample_rate)
    stack_db = 20.0 * np.log10(np.abs(biquad.response(sos, 2.0 * np.pi * freqs / sample_rate)))
    return float(np.mean(stack_db - (circuit_db - nominal_mean_db())))


BAND_EDGES_HZ = np.geomspace(60.0, 12000.0, 22)  # 21 bands, about a third of an octave each


def band_levels_db(y, sample_rate: float) -> np.ndarray:
    """Level (dB) of y in each of the BAND_EDGES_HZ bands (Welch power spectrum, 8,192-point segments)."""
    from scipy.signal import welch
    f, p = welch(np.asarray(y, np.float64), sample_rate, nperseg=8192)
    return np.array([10.0 * np.log10(p[(f >= lo) & (f < hi)].mean()) for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:])])


def recorded_against_circuit(clips, values=None) -> list[dict]:
    """For every two clips of the same input at different tone settings: the change of the target's band
    levels from the first setting to the second, the circuit's, and the RMS of their difference less its
    mean (dB) - how far the circuit misses what the knobs did to the recorded amp (its power amp included).

    Args:
        clips: ``effects.ddsp.dataset.load_clips()``.
        values: the circuit's calibration (default nominal).
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
                circuit = 20.0 * np.log10(np.abs(circuit_response(centres, *(cb["knobs"][k] for k in POTS), values))
                                          / np.abs(circuit_response(centres, *(ca["knobs"][k] for k in POTS), values)))
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
