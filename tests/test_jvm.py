"""JVM 410H pedal: shipped weights, bad files, the constructed gain and master knobs, inspection, accuracy."""
import json

import numpy as np
import pytest

from effects import ModelFileError, load_pedal
from effects.ddsp import amp, stream
from effects.jvm import DEFAULT_WEIGHTS, JVM
from tests.conftest import requires_shared

FS = 44100


def sine(freq_hz, amplitude, seconds=0.5):
    t = np.arange(int(FS * seconds)) / FS
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def harmonics(y, freq_hz):
    """Amplitudes of harmonics 1..10 of freq_hz in y (a whole number of periods, Hann window)."""
    w = np.hanning(y.size)
    spec = np.abs(np.fft.rfft(y * w))
    bins = (np.arange(1, 11) * freq_hz * y.size / FS).round().astype(int)
    return np.array([spec[b - 2:b + 3].max() for b in bins])


def settled(pedal, x):
    """Output over the second half of x (the first half lets state and knob ramps settle)."""
    return pedal.process(x)[x.size // 2:]


def test_default_weights_ship_in_resources_and_are_small():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 200_000
    pedal = load_pedal("jvm")
    assert pedal.sample_rate == FS
    assert [k.name for k in pedal.knobs] == ["gain", "bass", "middle", "treble", "master"]
    info = pedal.info()
    assert info["params"] == 10059 and info["ops_per_sample"] <= 1500


def test_a_given_model_path_is_used(tmp_path):
    params, rate, meta = stream.load(DEFAULT_WEIGHTS)
    params["gru"] = params["gru"] * 0.5
    stream.save(tmp_path / "half.npz", params, rate, meta)
    x = sine(220, 0.3, 0.1)
    assert not np.allclose(load_pedal("jvm", model_path=tmp_path / "half.npz").process(x), load_pedal("jvm").process(x))


def test_bad_model_files_raise_one_line_model_file_errors(tmp_path):
    params, rate, meta = stream.load(DEFAULT_WEIGHTS)
    (tmp_path / "text.npz").write_text("not an archive")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    bad_shape = dict(params, gru=np.zeros((6, 12)))
    with open(tmp_path / "shape.npz", "wb") as f:
        np.savez(f, format=np.array(stream.FORMAT), meta=np.array(json.dumps({"sample_rate": rate})), **bad_shape)
    stream.save(tmp_path / "48k.npz", params, 48000.0)
    with open(tmp_path / "os.npz", "wb") as f:
        np.savez(f, format=np.array(stream.FORMAT), meta=np.array(json.dumps({"sample_rate": rate, "oversampled": [3, 9]})),
                 **params)
    with open(tmp_path / "v1.npz", "wb") as f:
        np.savez(f, format=np.array("knobnet-ddsp-amp-1"), meta=np.array(json.dumps({"sample_rate": rate})), **params)
    cases = {"missing.npz": "not found", "text.npz": "not a knobnet DDSP amp", "other.npz": "format tag",
             "shape.npz": "gru has shape", "48k.npz": "trained at 48000", "v1.npz": "earlier knobnet.*own tone stack.*train it again",
             "os.npz": r"oversampled must list distinct GRU1 indices 0..6, not \[3, 9\]"}
    for name, message in cases.items():
        with pytest.raises(ModelFileError, match=message) as exc:
            JVM(model_path=tmp_path / name)
        assert "\n" not in str(exc.value)


def test_more_gain_gives_more_harmonic_distortion_and_more_compression():
    """THD of a 220 Hz sine rises with gain, and a +12 dB louder input (0.005 -> 0.02 peak, a softly
    picked string) comes out less than +12 dB louder, the less the higher the gain (the gain knob
    drives WH2's pre-gain: -15 dB at 0, +15 dB at 10)."""
    thd, growth_db = [], []
    for gain in (0.0, 2.5, 5.0, 7.5, 10.0):
        pedal = load_pedal("jvm", gain=gain)
        h = harmonics(settled(pedal, sine(220.5, 0.05, 1.0)), 220.5)
        thd.append(np.sqrt((h[1:] ** 2).sum()) / h[0])
        levels = []
        for amplitude in (0.005, 0.02):
            pedal.reset()
            levels.append(np.std(settled(pedal, sine(220.5, amplitude, 0.4))))
        growth_db.append(20 * np.log10(levels[1] / levels[0]))
    assert np.all(np.diff(thd) > 0), thd
    assert np.all(np.diff(growth_db) < 0), growth_db
    assert growth_db[-1] < 12.0 - 6.0  # at full gain at least 6 dB of compression


def test_master_scales_the_power_amp_input_from_silence():
    x = sine(220.5, 0.2, 0.4)
    rms = [np.std(settled(load_pedal("jvm", master=m), x)) for m in (0.0, 2.0, 5.0, 10.0)]
    assert rms[0] < 1e-6
    assert rms[1] < rms[2] < rms[3]


@pytest.mark.parametrize("knobs", [{}, {"gain": 10, "bass": 10, "middle": 0, "treble": 0, "master": 10},
                                   {"gain": 0, "treble": 10, "master": 1}])
def test_a_new_or_reset_amp_rests_silent_where_the_zero_state_thumps(knobs):
    """The trained amp's idle state is not zero (GRU1 biases hold DC along the path): from zero it plays a
    thump. A new pedal, a reset and the recovery from NaN input all start at the idle state of its knobs."""
    pedal = load_pedal("jvm", **knobs)
    silence = np.zeros(FS // 2, np.float32)
    assert np.abs(pedal.process(silence)).max() < 1e-6
    pedal.process(sine(220.5, 0.3, 0.2))
    pedal.reset()
    assert np.abs(pedal.process(silence)).max() < 1e-6
    pedal.process(sine(220.5, 0.3, 0.2))
    with pytest.warns(RuntimeWarning, match="NaN"):
        pedal.process(np.full(64, np.nan, np.float32))
    assert np.abs(pedal.process(silence)).max() < 1e-6
    pedal.amp.clear()
    assert np.abs(pedal.process(silence)).max() > 0.05


def test_knobs_turned_in_silence_are_silent_though_they_move_the_idle_state():
    """Gain and master move the amp's idle state: turned in silence, the model itself bumps softly (0.088
    peak for both 5 -> 10 over the 50 ms ramp). The pedal subtracts what the amp plays on silence, so it
    stays silent, after a recovery from NaN input too."""
    moved = {"gain": 10.0, "master": 10.0}
    silence = np.zeros(344 * 128, np.float32)
    bare = load_pedal("jvm")
    bare._silent.subtract = lambda out: None  # the model alone
    bare.process(silence)
    bare.set_knobs(**moved)
    assert np.abs(bare.process(silence)).max() > 0.05
    pedal = load_pedal("jvm")
    pedal.process(silence)
    pedal.set_knobs(**moved)
    assert np.abs(pedal.process(silence)).max() < 1e-6
    pedal.set_knobs(gain=0.0, master=2.0)
    with pytest.warns(RuntimeWarning, match="NaN"):
        recovered = np.concatenate([pedal.process(np.full(64, np.nan, np.float32)), pedal.process(silence)])
    assert np.abs(recovered).max() < 1e-6


@pytest.mark.parametrize("after", ["reset", "NaN input"])
def test_knobs_glide_from_where_the_amp_rested(after):
    """Knobs set after a reset (before the first block), or still moved when NaN input returns the amp to
    its idle state, glide from the knobs the amp rested at, like a knob turned on a running pedal, rather
    than jump to their targets."""
    moved = {"gain": 10.0, "master": 10.0}
    silence = np.zeros(344 * 128, np.float32)  # whole control periods: the ramps start at the same tick
    lead_in = np.zeros(64, np.float32)
    note = sine(220.5, 0.05, 0.2)
    running = load_pedal("jvm")
    running.process(silence)
    running.set_knobs(**moved)
    if after == "NaN input":
        running.process(silence)  # at the moved knobs; the NaN block then plays as silence
        with pytest.warns(RuntimeWarning, match="NaN"):
            running.process(np.full(64, np.nan, np.float32))
    else:
        running.process(lead_in)
    played = running.process(note)
    fresh = load_pedal("jvm")  # reset, knobs set after it
    fresh.set_knobs(**moved)
    fresh.process(lead_in)
    np.testing.assert_allclose(played, fresh.process(note), atol=1e-6)
    jumped = load_pedal("jvm", **moved)  # at rest at the moved knobs: no glide
    jumped.process(lead_in)
    assert np.abs(jumped.process(note) - played).max() > 0.05


def _band_db(stage, lo_hz, hi_hz):
    band = (stage.freqs_hz >= lo_hz) & (stage.freqs_hz <= hi_hz)
    return stage.magnitude_db[band].mean()


def test_tone_stack_responds_to_bass_middle_and_treble_in_the_right_direction():
    pedal = load_pedal("jvm")

    def tone(**knobs):
        return next(s for s in pedal.stages(knobs) if s.name == "tone stack")
    for knob, (lo, hi) in {"bass": (40, 150), "middle": (400, 1000), "treble": (4000, 10000)}.items():
        assert _band_db(tone(**{knob: 10}), lo, hi) > _band_db(tone(**{knob: 5}), lo, hi) + 1.0 > \
            _band_db(tone(**{knob: 0}), lo, hi) + 2.0, knob


def test_the_shipped_tone_stack_is_the_circuits_at_knob_settings_never_fitted():
    """The shipped tone stack follows the JVM's tone-stack circuit (effects.ddsp.tonestack) in the calibration
    the weights file holds, which the inspector shows beside it, off the fit's grid of knob settings too: RMS
    error under 0.5 dB at random settings over the fit's band."""
    from effects.ddsp import tonestack
    pedal = load_pedal("jvm")
    values = {k: np.asarray(v, np.float64) for k, v in amp.circuit_values(pedal.amp.params).items()}
    errs = []
    for bass, middle, treble in np.random.default_rng(3).uniform(0, 10, (10, 3)):
        stage = next(s for s in pedal.stages({"bass": bass, "middle": middle, "treble": treble}) if s.name == "tone stack")
        circuit_db = 20 * np.log10(np.abs(tonestack.circuit_response(stage.freqs_hz, bass, middle, treble, values)))
        band = (stage.freqs_hz >= tonestack.FIT_HZ[0]) & (stage.freqs_hz <= tonestack.FIT_HZ[1])
        np.testing.assert_allclose(np.diff(stage.reference_db), np.diff(circuit_db))  # the inspector's reference
        errs.append(stage.magnitude_db[band] - stage.reference_db[band])
    # The reference has one level for all settings (where the two meet at 5, 5, 5), so a level the fit got
    # wrong at some setting counts here too.
    assert np.sqrt(np.mean(np.square(errs))) < 0.5


def test_inspection_curves_are_complete_and_leave_the_audio_state_alone():
    pedal = load_pedal("jvm")
    x = sine(220.5, 0.3, 0.1)
    pedal.process(x)
    before = (pedal.amp.z.copy(), pedal.amp.h.copy(), pedal.amp.sos.copy())
    stages = pedal.stages({"gain": 8, "treble": 2}, loop_hz=200.0)
    assert [s.name for s in stages] == ["preamp WH1", "preamp WH2", "preamp WH3", "preamp WH4", "tone stack",
                                        "power amp", "output transformer"]
    assert sum(len(s.filters) for s in stages) == amp.N_BIQUADS
    assert sum(len(s.nonlinearities) for s in stages) == amp.N_GRUS + 1  # + the phase splitter's tanh
    for s in stages:
        assert s.magnitude_db.shape == s.phase_rad.shape == s.freqs_hz.shape and np.all(np.isfinite(s.magnitude_db))
    # Inspecting at other knobs changed nothing the audio thread uses.
    for a, b in zip(before, (pedal.amp.z, pedal.amp.h, pedal.amp.sos)):
        np.testing.assert_array_equal(a, b)
    # The WH1 GRU1 has memory: its loop encloses area (a memoryless curve would trace a line).
    nl = stages[0].nonlinearities[0]
    assert nl.loop_in.size == round(FS / 200.0)
    area = 0.5 * abs(np.sum(nl.loop_in * np.roll(nl.loop_out, -1) - np.roll(nl.loop_in, -1) * nl.loop_out))
    assert area > 1e-4
    # WH2's pre-gain follows the gain knob: 3 dB per step, so gain 8 is +9 dB over gain 5.
    g8, g5 = stages[1].gains_db["pre"], pedal.stages({"gain": 5, "treble": 2})[1].gains_db["pre"]
    assert abs(g8 - g5 - 9.0) < 1e-9


@requires_shared
def test_held_out_clips_stay_as_accurate_as_the_model_card_says():
    """The pedal (knob smoothing included) reproduces the card's figures on the latency-aligned clips
    (``jvm_ddsp.metrics.json``, written by ``python -m effects.training.compare --jvm-card``), scored from
    each target's first recorded sample (the recordings' first 2,048 samples are digital silence), at the
    alignment the amp trained at (``dataset.latency_samples_for``)."""
    from effects.ddsp import dataset
    from effects.training.data import unmeasured_head
    from effects.training.losses import metrics
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".metrics.json").read_text())["clips"]
    latency = dataset.latency_samples_for(stream.load(DEFAULT_WEIGHTS)[2]["oversampled"])
    for clip in dataset.load_clips(latency_samples=latency):
        if clip["name"] in ("B3_M7_T1_G5_file_7", "B10_M0_T0_G5_file_8"):
            pedal = load_pedal("jvm", **clip["knobs"])
            head = unmeasured_head(clip["x"], clip["y"])
            assert head == 2048 - max(latency, 0)
            m = metrics(pedal.process(clip["x"])[head:], clip["y"][head:])
            assert card[clip["name"]]["split"] == "test"
            assert m["esr_pre_emphasis"] == pytest.approx(card[clip["name"]]["esr_pre_emphasis"], rel=1e-3), clip["name"]


@requires_shared
def test_comparison_table_scores_the_shipped_amp_and_names_untrained_runs(tmp_path):
    """``python -m effects.training.compare --jvm``: the shipped row equals the model card's figures;
    a run without a report is a row that says how to train it."""
    from effects.training.compare import jvm_compare, jvm_markdown
    config = tmp_path / "jvm-gru8.yaml"
    config.write_text("data: {folder: data}\nmodel: {type: gru, hidden_size: 8}\nout: never-trained\n")
    result = jvm_compare(runs=(("Concat-GRU-8", config),))
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".metrics.json").read_text())["clips"]
    shipped, untrained = result["rows"]
    assert set(shipped["clips"]) == set(result["splits"]) and len(result["splits"]) == 4
    for name, m in shipped["clips"].items():
        assert m["esr_pre_emphasis"] == pytest.approx(card[name]["esr_pre_emphasis"], rel=1e-3), name
    assert sorted(result["splits"].values()) == ["seen setting"] * 2 + ["unseen setting"] * 2
    text = jvm_markdown(result)
    assert f"| Concat-GRU-8 | not trained (`knobnet train {config}`) |" in text and "B3_M7_T1_G5_file_7 (unseen" in text


@pytest.mark.parametrize("knobs", [[5, 1, 3, 7, 5], [10, 10, 0, 10, 8], [0, 0, 10, 0, 2]])
def test_the_shipped_weights_give_the_same_output_in_both_twins(knobs):
    """The torch model the weights were trained in and the pedal that plays them agree to 1e-4."""
    import torch
    params, rate, meta = stream.load(DEFAULT_WEIGHTS)
    x = (0.3 * np.random.default_rng(7).standard_normal(3000)).astype(np.float32)
    model = amp.DDSPAmp(params, rate, oversampled=meta["oversampled"]).double()
    with torch.no_grad():
        y_train = model(torch.from_numpy(x[None]).double(), torch.tensor([knobs], dtype=torch.float64) / 5 - 1)[0].numpy()
    pedal = load_pedal("jvm", **dict(zip(amp.KNOBS, knobs)))
    pedal.amp.clear()  # where the torch model starts
    np.testing.assert_allclose(pedal.process(x), y_train, atol=1e-4)
