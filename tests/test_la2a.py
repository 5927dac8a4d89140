"""LA-2A: the streaming micro-TCN reproduces the shared TorchScript teacher sample for sample, the
FiLM folding and interpolation are right, and, with the shipped student (the default) and with the
teacher, knob moves ramp without steps and the latency, meter, static curve, gain knob and bad
model files behave (spec section 6)."""
import math
import warnings

import numpy as np
import pytest

from effects import ModelFileError, load_pedal
from effects import la2a
from effects.la2a import LA2A, SHARED_MODEL
from effects.modelfile import read_state_dict, shared_path
from tests.conftest import guitar_like, requires_shared

MODEL = shared_path(*SHARED_MODEL)
PADDING = 13332  # receptive field - 1


@pytest.fixture(params=["student", pytest.param("teacher", marks=requires_shared)])
def weights(request):
    """model_path for load_pedal: None (the shipped student, the default) or the shared teacher."""
    return None if request.param == "student" else MODEL


@pytest.fixture(scope="module")
def reference():
    """The TorchScript model itself (tests only: the pedal never calls it)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the reader of these files
        return torch.jit.load(str(MODEL), map_location="cpu").eval()


def model_output(reference, x, limit, peak_reduction):
    """model(concat(zeros(13332), x), p): one output per sample of x, from zero history, less what the
    model plays on silence there (its DC at rest, which the pedal subtracts as the AC-coupled LA-2A
    passes none)."""
    import torch
    padded = np.concatenate([np.zeros(PADDING, np.float32), x])
    p = torch.tensor([[[float(limit), peak_reduction / 100.0]]])
    with torch.no_grad():
        y = reference(torch.from_numpy(padded)[None, None], p).numpy().reshape(-1)
        at_rest = reference(torch.zeros(1, 1, PADDING + 1), p).numpy().reshape(-1)[-1]
    assert abs(at_rest) > 1e-5  # the model's DC at rest (the test would not see a pedal that kept it)
    return y - at_rest


def guitar_clip(seconds=0.6):
    import soundfile as sf
    x, sr = sf.read(shared_path("data", "di", "clean_guitar_steerable_nafx.wav"), dtype="float32",
                    start=44100, frames=int(44100 * seconds))
    assert sr == 44100
    return x


def stream(pedal, x, block_size):
    return np.concatenate([pedal.process(x[i:i + block_size]) for i in range(0, len(x), block_size)])


def tone(amplitude, seconds, frequency_hz=1000.0):
    n = np.arange(int(44100 * seconds))
    return (amplitude * np.sin(2 * np.pi * frequency_hz / 44100 * n)).astype(np.float32)


@requires_shared
@pytest.mark.parametrize("mode, peak_reduction", [("compress", 0), ("compress", 50), ("compress", 100),
                                                  ("limit", 25), ("limit", 90)])
def test_streaming_matches_the_torchscript_model_from_silence(reference, mode, peak_reduction):
    x = guitar_clip()
    expected = model_output(reference, x, mode == "limit", peak_reduction)
    for block_size in (37, len(x)):
        pedal = load_pedal("la2a", model_path=MODEL, peak_reduction=peak_reduction, mode=mode)
        np.testing.assert_allclose(stream(pedal, x, block_size), expected, atol=1e-4, rtol=0)
    assert np.sqrt(np.mean(expected ** 2)) > 0.01  # the clip is not near silence


@requires_shared
def test_streaming_matches_sample_by_sample(reference):
    x = guitar_clip(0.03)
    pedal = load_pedal("la2a", model_path=MODEL, peak_reduction=70)
    np.testing.assert_allclose(stream(pedal, x, 1), model_output(reference, x, 0, 70), atol=1e-4, rtol=0)


@requires_shared
@pytest.mark.parametrize("model_path", [None, MODEL])
def test_output_lags_the_input_by_the_declared_latency(model_path):
    """The teacher was trained one sample behind its newest input (spec 6), the student on its
    outputs: with little compression the output correlates best with the input delayed by
    latency_samples = 1."""
    x = guitar_clip(0.75)
    pedal = load_pedal("la2a", model_path=model_path, peak_reduction=0)
    y = pedal.process(x)
    lags = range(-3, 5)
    corr = [np.dot(y[8:-8], x[8 - lag:len(x) - 8 - lag]) for lag in lags]
    assert pedal.latency_samples == 1
    assert list(lags)[int(np.argmax(corr))] == pedal.latency_samples


def film_float64(state, p):
    """scale, offset (blocks, 32) from the state dict in float64: ReLU MLP, FiLM, BN (spec 6)."""
    e = np.asarray(p, np.float64)
    for i in (0, 2, 4):
        e = np.maximum(state[f"gen.{i}.weight"] @ e + state[f"gen.{i}.bias"], 0.0)
    scales, offsets = [], []
    for n in range(4):
        gb = state[f"blocks.{n}.film.adaptor.weight"] @ e + state[f"blocks.{n}.film.adaptor.bias"]
        gamma, beta = gb[:32], gb[32:]
        mean, var = state[f"blocks.{n}.film.bn.running_mean"], state[f"blocks.{n}.film.bn.running_var"]
        # gamma (u - mean) / sqrt(var + eps) + beta = scale u + offset
        scale = gamma / np.sqrt(var + 1e-5)
        scales.append(scale)
        offsets.append(beta - scale * mean)
    return np.array(scales), np.array(offsets)


@requires_shared
@pytest.mark.parametrize("p", [(0.0, 0.0), (0.0, 0.55), (1.0, 1.0)])
def test_film_folds_into_scale_and_offset(p):
    state = read_state_dict(MODEL)
    s = load_pedal("la2a", model_path=MODEL).model.stream()
    s.condition(np.array(p, np.float32))
    scale, offset = film_float64(state, p)
    np.testing.assert_allclose(s.scale, scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.offset, offset, rtol=1e-5, atol=1e-5)


def test_mode_between_its_positions_interpolates_the_film_parameters(weights):
    pedal = load_pedal("la2a", model_path=weights, peak_reduction=40)
    model = pedal.model
    p = np.zeros((2, 2), np.float32)
    pedal.conditions(40.0, p)
    compress, limit = p
    ends = []
    for p in (compress, limit):
        s = model.stream()
        s.condition(p)
        ends.append((s.scale.copy(), s.offset.copy()))
    s = model.stream()
    s.condition(compress, limit, 0.25)
    np.testing.assert_allclose(s.scale, 0.75 * ends[0][0] + 0.25 * ends[1][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s.offset, 0.75 * ends[0][1] + 0.25 * ends[1][1], rtol=1e-6, atol=1e-6)
    s.condition(compress, limit, 1.0)
    assert np.array_equal(s.scale, ends[1][0]) and np.array_equal(s.offset, ends[1][1])


@pytest.mark.parametrize("change", [{"peak_reduction": 100}, {"mode": "limit"}])
def test_knob_moves_mid_stream_make_no_steps(change, weights):
    """A step would show as a spike in the second difference; per-sample FiLM ramps leave none.
    (Holding FiLM constant between 32-sample ticks, the peak_reduction jump gave 5.7x the steady
    maximum here.)"""
    x = tone(0.3, 1.0, 220.0)
    pedal = load_pedal("la2a", model_path=weights, peak_reduction=50)
    first = pedal.process(x[:22050])
    pedal.set_knobs(**change)
    y = np.concatenate([first, pedal.process(x[22050:])])
    d2 = np.abs(np.diff(y, 2))
    steady = max(d2[15000:22000].max(), d2[30000:].max())
    ramp = d2[22040:22050 + 2205 + 64].max()  # the 50 ms ramp and a tick after it
    assert ramp < 1.25 * steady


def test_gain_is_a_makeup_gain_of_0_4_db_per_step(weights):
    x = guitar_like(44100, 0.2)
    unity = load_pedal("la2a", model_path=weights).process(x)  # default gain 50: the model's output
    # gain 75: (75 - 50) * 0.4 = +10 dB = x 3.16228
    np.testing.assert_allclose(load_pedal("la2a", model_path=weights, gain=75).process(x), unity * 10 ** 0.5,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(load_pedal("la2a", model_path=weights, gain=0).process(x), unity * 0.1,
                               rtol=1e-5, atol=1e-7)


def test_gain_reduction_meter_reads_zero_in_silence_and_the_static_curve_on_a_steady_tone(weights):
    pedal = load_pedal("la2a", model_path=weights, peak_reduction=80)
    pedal.process(np.zeros(44100, np.float32))
    # the model's DC at silence (-62 dBFS here) is blocked: both mean squares ~0, over the floor
    assert abs(pedal.gain_reduction_db) < 0.01
    x = tone(0.5, 2.0)  # -6.02 dB
    stream(pedal, x, 512)
    expected = pedal.static_curve([20 * math.log10(0.5)])[0] - 20 * math.log10(0.5)
    assert expected < -6.0  # it compresses
    assert abs(pedal.gain_reduction_db - expected) < 0.1
    louder = load_pedal("la2a", model_path=weights, peak_reduction=80, gain=100)  # make-up gain is not reduction
    stream(louder, x, 512)
    assert abs(louder.gain_reduction_db - pedal.gain_reduction_db) < 1e-3


def test_meter_ballistics_reach_99_percent_in_300_ms():
    pedal = load_pedal("la2a")
    state = np.zeros(3)
    x = np.tile(np.float32([0.5, -0.5]), 13230 // 2)  # 300 ms at 44.1 kHz, x^2 = 0.25 at Nyquist
    la2a._mean_square(x, state, pedal._meter_coef, pedal._dc_coef)
    # coef = exp(-ln(100) / 13230): after 13230 samples s = 0.25 (1 - 1/100) = 0.2475, times the
    # DC blocker's power gain at Nyquist, (2 / (1 + exp(-2 pi 5 / 44100)))^2 = 1.0007
    assert abs(state[0] - 0.2475 * 1.0007) < 1e-4


def test_static_curve_compresses_more_with_more_peak_reduction_and_leaves_the_audio_alone(weights):
    levels = [-40.0, -30.0, -20.0, -10.0]
    pedal = load_pedal("la2a", model_path=weights, peak_reduction=0)
    x = guitar_like(44100, 0.3)
    whole = pedal.process(x)
    pedal.reset()
    first = pedal.process(x[:7000])
    light = pedal.static_curve(levels)
    pedal.set_knobs(peak_reduction=100)
    heavy = pedal.static_curve(levels)
    pedal.set_knobs(peak_reduction=100, gain=75)
    np.testing.assert_allclose(pedal.static_curve(levels[-1:]), heavy[-1:] + 10.0, atol=1e-6)  # +10 dB
    pedal.set_knobs(peak_reduction=0, gain=50)
    np.testing.assert_allclose(np.concatenate([first, pedal.process(x[7000:])]), whole, atol=1e-6)
    assert np.all(heavy < light)
    assert 0.9 < (light[1] - light[0]) / 10 < 1.1  # nearly linear below threshold
    assert (heavy[3] - heavy[2]) / 10 < 0.6  # compresses (ratio > 1.6) above it


@requires_shared
def test_info_counts_of_the_teacher():
    info = load_pedal("la2a", model_path=MODEL).info()
    assert info["params"] == 50_737  # spec section 6
    assert info["receptive_field"] == 13_333  # 1 + 12 (1 + 10 + 100 + 1000)
    # convs 13*32 + 3*13*32*32 = 40,352 MACs = 80,704 flops; per block and channel 2 (scale,
    # offset) + 2 (PReLU) + 2 (residual): 4*32*6 = 768; output 2*32 + 1 + 30 (tanh) = 95.
    assert info["ops_per_sample"] == 80_704 + 768 + 95


def test_missing_or_corrupt_weights_raise_one_line_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        LA2A(model_path=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError) as err:
        LA2A(model_path=bad)
    assert "\n" not in str(err.value)


def test_without_any_weights_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(la2a, "shared_path", lambda *parts: tmp_path.joinpath(*parts))
    monkeypatch.setattr(la2a, "SHIPPED_WEIGHTS", tmp_path / "la2a.npz")
    with pytest.raises(ModelFileError, match="no LA-2A weights.*model_path"):
        load_pedal("la2a")


@requires_shared
@pytest.mark.parametrize("path", [
    shared_path("models", "la2a-microtcn", "traced_2-uTCN-100__causal__4-10-5__fraction-1.0-bs32.pt"),
    shared_path("models", "la2a-microtcn", "traced_10-LSTM-32__1-32__fraction-1.0-bs32.pt"),
    shared_path("models", "od3-pyneuralfx", "statichyper_gru_32.pt"),
])
def test_other_models_are_refused(path):
    with pytest.raises(ModelFileError, match="micro-TCN") as err:
        LA2A(model_path=path)
    assert "\n" not in str(err.value)
