"""DDSP stages: biquad design by hand, frequency sampling vs IIR, GRU1 gradients, and the two twins."""
import json
import math

import numpy as np
import pytest
import torch

from effects.ddsp import amp, biquad, gru1, stream

FS = 48000.0


@pytest.mark.parametrize("xp", [np, torch])
def test_biquad_gains_at_their_design_frequencies(xp):
    """RBJ: a peak's gain at f0, a low shelf's at DC and a high shelf's at Nyquist is G_dB exactly.

    Peak at w0 (multiply num and den by e^{jw0}): num = (1 + aA)e^{jw} - 2cos w + (1 - aA)e^{-jw}
    = 2j aA sin w, den = 2j (a/A) sin w, so |H| = A^2 = 10^(G/20): +6 dB -> 1.99526.
    Low shelf at z = 1: num = A[2(A+1) - 2(A-1)] + 2A[(A-1) - (A+1)] = 4A - 4A... per the table,
    b0 + b1 + b2 = A[2(A+1) - 2(A-1)c] + 2A[(A-1) - (A+1)c] at c = 1 -> 4A, a-sum -> 4/A, so A^2.
    """
    arr = (lambda v: np.array(v)) if xp is np else (lambda v: torch.tensor(v, dtype=torch.float64))
    f0, g_db, q = arr([1000.0]), arr([6.0]), arr([0.7])
    w0 = 2 * math.pi * 1000.0 / FS
    expected = 10 ** (6.0 / 20)  # 1.99526
    for kind, w in ((biquad.PEAK, w0), (biquad.LOW_SHELF, 0.0), (biquad.HIGH_SHELF, math.pi)):
        sos = biquad.rbj(kind, f0, g_db, q, FS)
        h = biquad.response(sos[:, None, :], arr([w]) if xp is torch else np.array([w]))
        assert abs(abs(complex(h[0, 0])) - expected) < 1e-9, biquad.KINDS[kind]


def test_shelf_is_unity_at_the_other_end_and_half_gain_at_its_corner():
    """A low shelf of +12 dB: 0 dB at Nyquist (the shelf ends), +6 dB (half the dB) at f0 (RBJ's midpoint)."""
    sos = biquad.rbj(biquad.LOW_SHELF, np.array([300.0]), np.array([12.0]), np.array([0.707]), FS)
    h = biquad.response(sos[:, None, :], np.array([math.pi, 2 * math.pi * 300 / FS]))[0]
    assert abs(20 * np.log10(abs(h[0]))) < 1e-9
    assert abs(20 * np.log10(abs(h[1])) - 6.0) < 1e-6


def test_frequency_sampling_and_the_streaming_kernel_match_the_exact_iir():
    """Training (frequency sampling, float64) to 1e-6 and the float32 TDF-II kernel to 1e-4 of scipy's IIR."""
    from scipy.signal import sosfilt
    rng = np.random.default_rng(0)
    design = np.array([[150.0, 9.0, 0.7], [900.0, -6.0, 2.0], [5000.0, 4.0, 0.5]])
    sos = amp.design_sos(design, FS)
    x = rng.standard_normal(4096).astype(np.float32)
    y_iir = np.zeros_like(x)
    biquad.sos_run(x, sos.astype(np.float32), np.zeros((3, 2), np.float32), y_iir)
    y_fft = biquad.fft_filter(torch.from_numpy(x[None]).double(), torch.from_numpy(sos[None]), 16384)[0].numpy()
    exact = sosfilt(np.concatenate([sos[:, :3], np.ones((3, 1)), sos[:, 3:]], 1), x.astype(np.float64))
    np.testing.assert_allclose(y_fft, exact, atol=1e-6)
    np.testing.assert_allclose(y_iir, exact, atol=1e-4)


def test_gru1_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((2, 24)), requires_grad=True)
    p = torch.tensor(rng.uniform(-1.5, 1.5, gru1.N_PARAMS), requires_grad=True)
    h0 = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gru1.gru1, (x, p, h0), eps=1e-6, atol=1e-6)


def test_gru1_forward_is_the_torch_gru():
    rng = np.random.default_rng(2)
    p = rng.uniform(-1, 1, gru1.N_PARAMS)
    ref = torch.nn.GRU(1, 1, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0[:] = torch.tensor(p[0:3, None])
        ref.weight_hh_l0[:] = torch.tensor(p[3:6, None])
        ref.bias_ih_l0[:] = torch.tensor(p[6:9])
        ref.bias_hh_l0[:] = torch.tensor(p[9:12])
    x = torch.tensor(rng.standard_normal((3, 100)))
    expected = ref(x[..., None])[0][..., 0]
    np.testing.assert_allclose(gru1.gru1(x, torch.tensor(p)).numpy(), expected.detach().numpy(), atol=1e-12)


def _twins(params, knobs, n=3000, seed=3, oversampled=()):
    x = (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    model = amp.DDSPAmp(params, 44100.0, oversampled=oversampled).double()
    with torch.no_grad():
        y_train = model(torch.from_numpy(x[None]).double(), torch.tensor(knobs[None] / 5.0 - 1.0))[0].numpy()
    s = stream.AmpStream(params, 44100.0, oversampled)
    s.configure(knobs)
    s.clear()  # where the torch model starts (the pedal starts at the idle state instead)
    y_stream = np.empty_like(x)
    s.run(x, y_stream)
    return y_train, y_stream


@pytest.mark.parametrize("oversampled", [(), amp.OVERSAMPLED_GRUS, (0, 6)])
@pytest.mark.parametrize("knobs", [[5, 5, 5, 5, 5], [9, 0, 10, 2, 7], [1, 10, 3, 8, 3]])
def test_training_and_streaming_twins_agree(knobs, oversampled):
    """Also with GRU1s at twice the rate: halfbands by frequency sampling in training, polyphase when streaming."""
    params = amp.init_params(4)
    params["ctrl.ts.2.w"] = 10.0 * params["ctrl.ts.2.w"]  # a tone stack that moves with its knobs
    params["gru"] = np.random.default_rng(2).uniform(-1.5, 1.5, params["gru"].shape)  # GRU1s with memory
    y_train, y_stream = _twins(params, np.array(knobs, np.float64), oversampled=oversampled)
    assert np.abs(y_stream).max() > 0.01  # the signal gets through
    np.testing.assert_allclose(y_stream, y_train, atol=1e-4)
    if oversampled:  # and the oversampling changes the output (the twins do not agree by ignoring it)
        assert np.abs(_twins(params, np.array(knobs, np.float64))[1] - y_stream).max() > 1e-3


def test_inverted_parameters_negate_the_output_exactly_in_both_twins():
    params = amp.init_params(6)
    params["gru"] = np.random.default_rng(1).uniform(-1.5, 1.5, params["gru"].shape)  # a GRU1 with memory
    knobs = np.array([6, 3, 7, 4, 6], np.float64)
    y_train, y_stream = _twins(params, knobs)
    y_train_inv, y_stream_inv = _twins(amp.inverted(params), knobs)
    assert np.abs(y_stream).max() > 0.01
    np.testing.assert_array_equal(y_train_inv, -y_train)
    np.testing.assert_array_equal(y_stream_inv, -y_stream)
    model = amp.DDSPAmp(params, 44100.0).double()
    model.invert_output()
    np.testing.assert_allclose(model.numpy_params()["gru"], amp.inverted(params)["gru"], atol=1e-7)


def test_a_knob_move_recomputes_only_what_the_knobs_move_and_gets_the_full_design():
    """The stream redesigns the tone stack and the two knob gains; everything else must not depend
    on the knobs, so the result equals the whole design (amp.dsp_params) at every setting."""
    params = amp.init_params(5)
    s = stream.AmpStream(params, 44100.0)
    for knobs in np.random.default_rng(0).uniform(0, 10, (20, 5)):
        s.configure(knobs)
        sos, gains = amp.dsp_params(s.params, knobs, 44100.0)
        np.testing.assert_array_equal(s.sos, sos)
        np.testing.assert_allclose(s.gains, gains.astype(np.float32), rtol=1e-6)


def test_counts_match_the_spec():
    """4 MLPs of 1,248 + 33m params (m = 80 + 9 + 51 + 11 = 151) + 7 GRU1 x 12 = 10,059 (spec 7.4).
    Ops: 45 biquads x 9 + 7 GRU1 x 109 + 30 (phase splitter) + 16 gains + 2 + 3 (DC blocker) = 1,219."""
    assert amp.count_params() == 4 * 1248 + 33 * 151 + 84 == 10059
    assert amp.ops_per_sample() == 45 * 9 + 7 * 109 + 30 + 16 + 2 + 3 == 1219


def test_oversampled_gru1s_cost_their_second_step_and_halfbands_and_are_checked():
    assert amp.ops_per_sample(amp.OVERSAMPLED_GRUS) == 1219 + 2 * (109 + 4 * 3 + 2) == 1465 <= 1500
    for bad in ([7], [2, 2], ["x"], 3, "23", [2.7], [True]):
        with pytest.raises(ValueError, match="oversampled must list"):
            amp.check_oversampled(bad)


def test_the_halfbands_are_the_polyphase_form_of_the_filter_training_samples():
    """Upsampling (zeros between samples, then 2H) and downsampling (H, then every even sample) by
    frequency sampling equal the polyphase allpass pairs the streaming kernel runs; a tone well below
    Nyquist goes through the round trip at unity gain, and H attenuates the band it keeps out."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000)
    np.testing.assert_allclose(amp.upsample2(torch.tensor(x)[None], 8192)[0].numpy(), amp.upsample2_np(x), atol=1e-9)
    v = rng.standard_normal(6000)
    np.testing.assert_allclose(amp.downsample2(torch.tensor(v)[None], 8192)[0].numpy(), amp.downsample2_np(v), atol=1e-9)
    tone = np.sin(2 * np.pi * 1000.0 / 44100.0 * np.arange(8000))
    assert np.std(amp.downsample2_np(amp.upsample2_np(tone))[4000:]) / np.std(tone[4000:]) == pytest.approx(1.0, abs=1e-3)
    stop = np.abs(amp.halfband_response(2 * np.pi * np.linspace(25600.0, 44100.0, 200) / 88200.0))
    assert 20 * np.log10(stop.max()) < -32.0


def test_inspection_draws_an_oversampled_gru1_through_its_halfbands():
    from effects.ddsp import inspect
    params, knobs = amp.init_params(3), np.array([5.0, 5, 5, 5, 5])
    plain = inspect.stages(params, knobs, 44100.0)
    over = inspect.stages(params, knobs, 44100.0, oversampled=(2,))
    w = 2 * np.pi * plain[2].freqs_hz / 44100.0
    round_trip = amp.halfband_response(w / 2) ** 2 + amp.halfband_response(w / 2 + np.pi) ** 2
    np.testing.assert_allclose(over[2].magnitude_db, plain[2].magnitude_db + 20 * np.log10(np.abs(round_trip)), atol=1e-9)
    np.testing.assert_array_equal(over[1].magnitude_db, plain[1].magnitude_db)  # WH2 runs at the base rate
    nl_over, nl_plain = over[2].nonlinearities[0], plain[2].nonlinearities[0]
    assert np.abs(nl_over.loop_out - nl_plain.loop_out).max() > 1e-3  # the GRU1 steps twice as often
    # The round trip is the response of up- and downsampling an impulse (no GRU1 between).
    impulse = np.zeros(4096)
    impulse[0] = 1.0
    h = amp.downsample2_np(amp.upsample2_np(impulse))
    dtft = np.exp(-1j * np.outer(w, np.arange(h.size))) @ h
    np.testing.assert_allclose(round_trip, dtft, atol=1e-9)
    # The power amp's and output transformer's GRU1s too, named as such.
    late = inspect.stages(params, knobs, 44100.0, oversampled=(amp.GRU_WH_PLUS, amp.GRU_OT))
    assert [n.name for n in late[5].nonlinearities] == ["phase splitter tanh", "WH+ GRU1 (2x rate)", "WH- GRU1"]
    assert late[6].nonlinearities[0].name == "OT GRU1 (2x rate)"
    np.testing.assert_allclose(late[6].magnitude_db, plain[6].magnitude_db + 20 * np.log10(np.abs(round_trip)), atol=1e-9)
    assert np.abs(late[5].magnitude_db - plain[5].magnitude_db).max() > 1e-3


def _tiny_amp_dataset(folder) -> list[dict]:
    """Three short pairs of a tanh 'amp' at three tone settings (the last one for test), written to folder."""
    from effects.training.data import write_dataset
    rng = np.random.default_rng(5)
    pairs = []
    for i, (bass, treble) in enumerate(((2, 8), (8, 2), (5, 5))):
        x = (0.3 * rng.standard_normal(6000)).astype(np.float32)
        pairs.append({"name": f"c{i}", "x": x, "y": (0.5 * np.tanh(3 * x)).astype(np.float32),
                      "knobs": {"gain": 5, "bass": bass, "middle": 5, "treble": treble},
                      "split": "test" if i == 2 else "train"})
    write_dataset(folder, 44100, {k: (0, 10) for k in ("gain", "bass", "middle", "treble")}, pairs)
    return pairs


def test_knobnet_train_trains_the_ddsp_amp_into_a_pedal_weights_file(tmp_path):
    """Model type ``ddsp`` through the generic loop: the loss falls, and the exported file plays in the
    JVM pedal exactly like the streaming twin whose metrics the report holds."""
    from effects.jvm import JVM
    from effects.training.data import write_dataset
    from effects.training.losses import metrics
    from effects.training.train import ConfigError, train
    pairs = _tiny_amp_dataset(tmp_path / "data")
    # With GRU1s at twice the rate: the file says so, and the pedal plays it as the report scored it.
    (tmp_path / "os.yaml").write_text(
        "data: {folder: data, segment: 2048, warmup: 256}\nmodel: {type: ddsp, n_fft: 4096, oversampled: [2, 3]}\n"
        "train: {batch_size: 2, lr: 0.01, steps: 4, validate_every: 2, seed: 0, threads: 1}\nout: os\n")
    report = train(tmp_path / "os.yaml", log=lambda *_: None)
    assert stream.load(tmp_path / "os" / "model.npz")[2]["oversampled"] == (2, 3)
    assert report["ops_per_sample"] == amp.ops_per_sample((2, 3))
    y = JVM(model_path=tmp_path / "os" / "model.npz").process(pairs[2]["x"])
    assert metrics(y, pairs[2]["y"])["esr"] == pytest.approx(report["test"][0]["esr"], rel=1e-4)
    (tmp_path / "bad.yaml").write_text("data: {folder: data}\nmodel: {type: ddsp, oversampled: [8]}\nout: bad\n")
    with pytest.raises((ConfigError, ValueError), match="oversampled must list"):
        train(tmp_path / "bad.yaml", log=lambda *_: None)
    (tmp_path / "c.yaml").write_text(
        "data: {folder: data, segment: 2048, warmup: 256}\nmodel: {type: ddsp, n_fft: 4096}\n"
        "loss: {esr: 1.0, mae: 0.0, mrstft: 0.0, pre_emphasis: true}\n"
        "train: {batch_size: 2, lr: 0.01, steps: 30, validate_every: 10, seed: 0, threads: 1}\nout: run\n")
    report = train(tmp_path / "c.yaml", log=lambda *_: None)
    history = report["history"]
    assert history[-1]["train"] < history[0]["train"]
    assert report["params"] == amp.count_params() and report["ops_per_sample"] == amp.ops_per_sample()
    # The tone stack trained not at all: it is the circuit fit the model was built with.
    exported = stream.load(tmp_path / "run" / "model.npz")[0]
    fitted = amp.circuit_fitted_init(0, 44100.0)[0]
    for k in fitted:
        if k.startswith(amp.TONE_STACK_PARAMS + (amp.CIRCUIT_PREFIX,)):  # and the circuit stays nominal
            np.testing.assert_array_equal(exported[k], fitted[k].astype(np.float32), err_msg=k)
    assert not np.array_equal(exported["gru"], fitted["gru"].astype(np.float32))  # the rest did train
    pedal = JVM(model_path=tmp_path / "run" / "model.npz")
    y = pedal.process(pairs[2]["x"])
    assert metrics(y, pairs[2]["y"])["esr"] == pytest.approx(report["test"][0]["esr"], rel=1e-4)
    # A run from these weights (learning rate 0, so they stay as the polarity check leaves them) on the same
    # data keeps their polarity; on inverted targets it inverts them.
    start = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["best_model"]["p.gru"].numpy()
    for sign, verdict in ((1, "kept"), (-1, "inverted")):
        write_dataset(tmp_path / f"data{sign}", 44100, {k: (0, 10) for k in ("gain", "bass", "middle", "treble")},
                      [dict(p, y=sign * p["y"]) for p in pairs])
        (tmp_path / "c2.yaml").write_text(
            f"data: {{folder: data{sign}, segment: 2048, warmup: 256}}\nmodel: {{type: ddsp, n_fft: 4096}}\n"
            "train: {batch_size: 2, lr: 0.0, steps: 2, validate_every: 2, seed: 0, threads: 1, "
            f"init_from: run/checkpoint.pt, match_polarity: true}}\nout: run{sign}\n")
        lines = []
        train(tmp_path / "c2.yaml", log=lines.append)
        said = next(line for line in lines if line.startswith("output polarity"))
        played = stream.load(tmp_path / f"run{sign}" / "model.npz")[0]["gru"]
        np.testing.assert_array_equal(played, (start if sign == 1 else amp.inverted({"gru": start})["gru"]).astype(np.float32))
        assert said.endswith(verdict), said


def test_at_its_nominal_calibration_the_circuit_tone_stack_plays_like_the_fitted_biquads():
    """Model option ``tone_stack: circuit`` puts the circuit itself where the biquads were, at their level
    (``tonestack.tone_stack_level_db``): the outputs differ by the fit's 0.15 dB and the phase of a
    magnitude fit, not by a level."""
    params = amp.circuit_fitted_init(0, 44100.0)[0]
    x = torch.from_numpy((0.2 * np.random.default_rng(2).standard_normal((2, 8192))).astype(np.float32))
    c = torch.tensor([[0.0, -0.6, 0.4, 0.8], [0.0, 1.0, -1.0, -0.4]])
    with torch.no_grad():
        fitted = amp.DDSPAmp(params, n_fft=16384, num_conds=4)(x, c)
        circuit = amp.DDSPAmp(params, n_fft=16384, num_conds=4, tone_stack="circuit")(x, c)
    assert float((circuit - fitted).square().sum() / fitted.square().sum()) < 0.02


def test_a_circuit_run_calibrates_the_circuit_and_the_next_run_plays_biquads_fitted_to_it(tmp_path):
    """``tone_stack: circuit`` trains the calibration (the biquads stay as built); its export and the next
    ``fitted`` run from it (``train.init_from``) play biquads refitted to the calibrated circuit at the level
    the amp trained around, and that run holds the calibration."""
    from effects.ddsp import tonestack
    from effects.training.train import train
    _tiny_amp_dataset(tmp_path / "data")
    (tmp_path / "circuit.yaml").write_text(
        "data: {folder: data, segment: 2048, warmup: 256}\nmodel: {type: ddsp, n_fft: 4096, tone_stack: circuit}\n"
        "train: {batch_size: 2, lr: 0.05, steps: 20, validate_every: 10, seed: 0, threads: 1}\nout: circuit\n")
    report = train(tmp_path / "circuit.yaml", log=lambda *_: None)
    assert report["params"] == amp.count_params()
    start = amp.circuit_fitted_init(0, 44100.0)[0]
    best = torch.load(tmp_path / "circuit" / "checkpoint.pt", weights_only=False)["state"]["best_model"]
    calibrated = {k: best["p." + k.replace(".", "_")].double().numpy() for k in amp.CIRCUIT_SHAPES}
    assert np.abs(calibrated["circuit.part_alpha"]).max() > 0.05  # the calibration trained
    exported = stream.load(tmp_path / "circuit" / "model.npz")[0]
    for k, v in calibrated.items():
        np.testing.assert_allclose(exported[k], v, rtol=1e-6)
    values = amp.circuit_values(calibrated)
    level_db = tonestack.tone_stack_level_db(start, 44100.0)
    assert tonestack.tone_stack_level_db(exported, 44100.0, values) == pytest.approx(level_db, abs=0.3)
    # Then a fitted run from it: refitted once, the same biquads as the export, calibration held.
    (tmp_path / "fitted.yaml").write_text(
        "data: {folder: data, segment: 2048, warmup: 256}\nmodel: {type: ddsp, n_fft: 4096}\n"
        "train: {batch_size: 2, lr: 0.0, steps: 2, validate_every: 2, seed: 0, threads: 1, "
        "init_from: circuit/checkpoint.pt}\nout: fitted\n")
    lines = []
    train(tmp_path / "fitted.yaml", log=lines.append)
    assert any(line.startswith("tone stack refitted to the calibrated circuit") for line in lines)
    again = stream.load(tmp_path / "fitted" / "model.npz")[0]
    for k in exported:
        np.testing.assert_array_equal(again[k], exported[k], err_msg=k)


def test_weights_saved_before_the_circuit_calibration_start_a_run_at_the_nominal_calibration(tmp_path):
    """A checkpoint from before ``circuit.*`` and ``ts_fitted_to`` existed still serves ``train.init_from``:
    its amp loads unchanged, at the nominal calibration, and is not refitted. Another model still fails."""
    from effects.ddsp import tonestack
    from effects.training.train import ConfigError, init_weights
    params = amp.init_params(3)
    old = {k: v for k, v in amp.DDSPAmp(params, n_fft=4096).state_dict().items()
           if not k.startswith("p.circuit_") and k != "ts_fitted_to"}
    torch.save({"state": {"best_model": old}, "model": old}, tmp_path / "old.pt")
    model = amp.DDSPAmp(amp.init_params(4), n_fft=4096, tone_stack="circuit")
    init_weights(model, tmp_path / "old.pt")
    loaded = model.numpy_params()
    for k, v in params.items():
        nominal = tonestack.nominal_values().get(k.removeprefix(amp.CIRCUIT_PREFIX))
        np.testing.assert_allclose(loaded[k], v if nominal is None else nominal, rtol=1e-6, err_msg=k)
    assert model.refit_tone_stack() is None
    del old["p.gru"]
    torch.save({"state": {"best_model": old}, "model": old}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="holds another model"):
        init_weights(model, tmp_path / "other.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the DDSP amp's GPU path is not run")
@pytest.mark.parametrize("tone_stack,oversampled", [("fitted", []), ("circuit", []), ("fitted", [2, 3])])
def test_the_ddsp_amp_trains_on_the_gpu_as_on_the_cpu(tmp_path, tone_stack, oversampled):
    """Same seed, same batches: the GPU run's losses follow the CPU run's (float32 rounding apart), the circuit
    (``tone_stack: circuit``) and its level bookkeeping included, and the halfbands of oversampled GRU1s."""
    from effects.training.train import train
    _tiny_amp_dataset(tmp_path / "data")
    runs = {}
    for device in ("cpu", "cuda"):
        (tmp_path / f"{device}.yaml").write_text(
            f"data: {{folder: data, segment: 2048, warmup: 256}}\n"
            f"model: {{type: ddsp, n_fft: 4096, tone_stack: {tone_stack}, oversampled: {oversampled}}}\n"
            f"train: {{batch_size: 2, lr: 0.01, steps: 10, validate_every: 5, seed: 0, threads: 1, device: {device}}}\n"
            f"out: run-{device}\n")
        runs[device] = train(tmp_path / f"{device}.yaml", log=lambda *_: None)
    assert [h["valid"] for h in runs["cuda"]["history"]] == pytest.approx([h["valid"] for h in runs["cpu"]["history"]],
                                                                           rel=1e-3)
