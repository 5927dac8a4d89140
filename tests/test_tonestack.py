"""The JVM tone-stack circuit (effects.ddsp.tonestack) and the DDSP tone stack fitted to it."""
import numpy as np
import pytest

from effects.ddsp import amp, biquad, tonestack
from effects.ddsp.tonestack import PARTS
from tests.conftest import requires_shared


def level_db(freqs_hz, bass, middle, treble):
    return 20.0 * np.log10(np.abs(tonestack.circuit_response(np.asarray(freqs_hz, np.float64), bass, middle, treble)))


def test_circuit_limits_worked_out_by_hand():
    """At 0 Hz the capacitors are open: nothing reaches the output. Far above the audio band they are
    shorts: T sits at the input (C1), and X, M and S are one node N (C2, C3; the bass pot between X and M
    carries nothing). Two nodes are left, N and out, with conductances g1 = 1/R1 (input-N), gm = 1/(m RM)
    (N-ground), ga = 1/((1 - t) RT) (input-out), gb = 1/(t RT) (out-N), gl = 1/(R2 + RV) (out-ground):
        N (g1 + gm + gb) - out gb = g1,   out (ga + gb + gl) - N gb = ga,
    so out = (ga (g1 + gm + gb) + g1 gb) / ((g1 + gm + gb)(ga + gb + gl) - gb^2). At bass 5, middle 0
    (m = POT_END: 200 ohm), treble 10 (t = 1 - POT_END: legs 2k and 198k): g1 + gm + gb = 5.0354e-3, ga + gb + gl = 5.0601e-4,
    out = 2.5179e-6 / 2.5479e-6 = 0.9882."""
    assert abs(tonestack.circuit_response(np.array([1e-3]), 5, 5, 5)[0]) < 1e-4
    m, t = tonestack.pot_position(0.0, "middle"), tonestack.pot_position(10.0, "treble")
    g1, gm, gl = 1 / PARTS["R1"], 1 / (m * PARTS["RM"]), 1 / (PARTS["R2"] + tonestack.R_VOLUME)
    ga, gb = 1 / ((1 - t) * PARTS["RT"]), 1 / (t * PARTS["RT"])
    by_hand = (ga * (g1 + gm + gb) + g1 * gb) / ((g1 + gm + gb) * (ga + gb + gl) - gb * gb)
    h_inf = tonestack.circuit_response(np.array([1e10]), 5, 0, 10)[0]
    assert abs(h_inf) == pytest.approx(by_hand, rel=1e-5)
    assert by_hand == pytest.approx(0.9882, abs=1e-4)


def test_pot_tapers_run_from_end_to_end_and_rise():
    for kind in tonestack.TAPERS:
        pos = tonestack.pot_position(np.linspace(0, 10, 41), kind)
        assert pos[0] == tonestack.POT_END and pos[-1] == pytest.approx(1 - tonestack.POT_END, abs=1e-12)
        assert np.all(np.diff(pos) > 0)  # the end resistance adds to the track: no flat stretch at either end
    assert tonestack.pot_position(5.0, "bass") < 0.2  # the bass pot is strongly audio-taper


def test_each_knob_moves_its_own_band_of_the_circuit():
    lows, mids, highs = [60.0, 120.0], [500.0, 800.0], [5000.0, 8000.0]
    for band, knob in ((lows, 0), (mids, 1), (highs, 2)):
        levels = []
        for v in (0.0, 5.0, 10.0):
            knobs = [5.0, 5.0, 5.0]
            knobs[knob] = v
            levels.append(level_db(band, *knobs).mean())
        assert levels[0] + 1.0 < levels[1] < levels[2] - 1.0, (knob, levels)
    # The Marshall scoop: with middle at 0 the mids sit below both ends.
    scoop = level_db([60.0, 700.0, 6000.0], 5, 0, 5)
    assert scoop[1] < scoop[0] - 3.0 and scoop[1] < scoop[2] - 3.0


def test_the_fitted_tone_stack_follows_the_circuit_between_its_grid_points():
    """A short fit already follows the circuit at knob settings it never saw (the shipped fit runs longer:
    tests/test_jvm.py checks the shipped weights)."""
    params, rms_db = tonestack.fit_tone_stack(amp.init_params(0), 44100.0, steps=600)
    assert rms_db < 1.0
    freqs = np.geomspace(*tonestack.FIT_HZ, 40)
    errs = []
    for knobs in np.random.default_rng(0).uniform(0, 10, (12, 3)):
        c = amp.normalise(np.array([5.0, *knobs, 5.0]))
        sos = amp.design_sos(amp.tone_stack_design(params, c, 44100.0), 44100.0)
        errs.append(20 * np.log10(np.abs(biquad.response(sos, 2 * np.pi * freqs / 44100.0))) - level_db(freqs, *knobs))
    errs = np.array(errs)
    assert np.sqrt(np.mean(np.square(errs - errs.mean()))) < 1.5


@requires_shared
def test_the_circuit_predicts_what_the_tone_knobs_did_to_the_recorded_amp():
    """Clips of one input at two tone settings: the change of the target's band levels follows the
    circuit's within 2.5 dB RMS (less the mean) on every pair, the training pairs (on which POT_END was
    set) 1.7-2.3 dB; the change itself spans 16-49 dB between bands on these pairs."""
    from effects.ddsp import dataset
    rows = tonestack.recorded_against_circuit(dataset.load_clips())
    assert len(rows) == 9 and sum(r["split"] == "train" for r in rows) == 5
    for r in rows:
        assert r["misfit_db"] < 2.5, (r["from"], r["to"], r["file"], r["misfit_db"])
        assert np.ptp(r["recorded_db"]) > 10.0


def test_the_circuit_in_torch_is_the_circuit_in_numpy_and_differentiable_in_its_calibration():
    """A calibration off nominal gives the same response in both namespaces, knobs batched, and torch's
    gradient in the part values and tapers matches finite differences (gradcheck)."""
    import torch
    rng = np.random.default_rng(4)
    values = {"part_alpha": rng.normal(0, 1, len(PARTS)), "taper": tonestack.nominal_values()["taper"] + rng.normal(0, 0.2, (3, 2)),
              "end_alpha": rng.normal(0, 0.5, 3)}
    freqs = np.geomspace(40.0, 12000.0, 9)
    knobs = [np.array([2.0, 7.5]), np.array([3.0, 1.0]), np.array([8.0, 4.5])]
    h_np = tonestack.circuit_response(freqs, *knobs, values)
    h_torch = tonestack.circuit_response(torch.as_tensor(freqs), *(torch.as_tensor(k) for k in knobs),
                                         {k: torch.as_tensor(v) for k, v in values.items()})
    for row in range(2):
        np.testing.assert_allclose(h_np[row], tonestack.circuit_response(freqs, *(k[row] for k in knobs), values), rtol=1e-12)
    np.testing.assert_allclose(h_torch.numpy(), h_np, rtol=1e-10)

    def level(*calibration):
        return tonestack.circuit_response(torch.as_tensor(freqs), *(torch.as_tensor(k) for k in knobs),
                                          dict(zip(values, calibration))).abs()
    inputs = tuple(torch.tensor(v, requires_grad=True) for v in values.values())
    assert torch.autograd.gradcheck(level, inputs)


def test_a_calibration_keeps_the_parts_within_their_tolerance():
    nominal = tonestack.part_values(tonestack.nominal_values())
    assert nominal == pytest.approx(PARTS)
    for alpha in (-50.0, 50.0):
        values = dict(tonestack.nominal_values(), part_alpha=np.full(len(PARTS), alpha))
        for name, v in tonestack.part_values(values).items():
            assert v == pytest.approx(PARTS[name] * (1.0 + np.sign(alpha) * tonestack.TOLERANCE))


def test_a_fit_at_a_level_follows_the_calibrated_circuit_at_that_level():
    """Fitted at -4 dB to a calibration off nominal, the biquads sit at -4 dB (``tone_stack_level_db``)
    and follow that circuit, not the nominal one."""
    values = {"part_alpha": np.array([1.0, -1.0, 2.0, 0.5, 0.0, -0.5, 1.5, -2.0]),
              "taper": np.array([[3.0, -2.5], [2.2, -0.9], [1.5, -0.7]]), "end_alpha": np.array([1.0, 0.0, -0.5])}
    params, rms_db = tonestack.fit_tone_stack(amp.init_params(0), 44100.0, steps=600, values=values, level_db=-4.0)
    assert tonestack.tone_stack_level_db(params, 44100.0, values) == pytest.approx(-4.0, abs=0.3)
    grid, freqs, _ = tonestack.fit_targets()
    panel = np.column_stack([np.full(len(grid), 5.0), grid, np.full(len(grid), 5.0)])
    sos = amp.design_sos(amp.tone_stack_design(params, amp.normalise(panel), 44100.0), 44100.0)
    stack_db = 20 * np.log10(np.abs(biquad.response(sos, 2 * np.pi * freqs / 44100.0)))

    def shape_rms_db(vals):  # level-free
        err = stack_db - tonestack.fit_targets(vals)[2]
        return np.sqrt(np.mean(np.square(err - err.mean())))
    assert shape_rms_db(values) < 0.6 and shape_rms_db(None) > 1.0  # the two circuits differ by 1.3 dB RMS
    assert rms_db == pytest.approx(np.sqrt(shape_rms_db(values) ** 2 + (tonestack.tone_stack_level_db(params, 44100.0, values) + 4.0) ** 2), rel=1e-3)
