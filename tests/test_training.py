"""Training: the compiled GRU recurrence, conditioned GRUs and their streaming twins, losses worked
out by hand, dataset validation, config errors, a tiny run that learns, and exact resume."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import requires_shared
from effects import load_pedal
from effects.recurrent import GRUWeights, load_conditioned_gru
from effects.training.data import DatasetError, estimate_latency, load_dataset, write_dataset
from effects.training.gru_op import gru_recurrence
from effects.training.losses import esr, mae, metrics, mrstft, pre_emphasis_fir, pre_emphasize
from effects.training.rnn import ConditionedGRU
from effects.training.train import ConfigError, load_config, train


def test_gru_recurrence_gradients_and_agreement_with_torch_gru():
    torch.manual_seed(0)
    B, T, H = 3, 6, 4
    args = [torch.randn(B, T, 3 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, H, 3 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, 3 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, H, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(gru_recurrence, args)
    gru = torch.nn.GRU(1, H, batch_first=True).double()
    x = torch.randn(B, T, 1, dtype=torch.float64)
    expected, _ = gru(x)
    xi = x @ gru.weight_ih_l0.T + gru.bias_ih_l0
    torch.testing.assert_close(gru_recurrence(xi, gru.weight_hh_l0.T, gru.bias_hh_l0), expected)


@pytest.mark.parametrize("conditioning", ["concat", "film", "statichyper"])
def test_trained_model_and_its_streaming_twin_agree(conditioning, tmp_path):
    torch.manual_seed(1)
    model = ConditionedGRU(conditioning, hidden_size=12, num_conds=2).double()
    x = torch.randn(2, 400, dtype=torch.float64) * 0.4
    c = torch.tensor([[0.3, -0.5], [-1.0, 1.0]], dtype=torch.float64)
    expected = model(x, c).detach().numpy()
    model.export(tmp_path / "m.npz")
    twin, meta = load_conditioned_gru(tmp_path / "m.npz")
    assert meta["conditioning"] == conditioning and twin.params == sum(p.numel() for p in model.parameters())
    for b in range(2):
        s = twin.stream()
        twin.weights_into(c[b].numpy(), s.weights)
        out = np.empty(400, np.float32)
        s.run(x[b].numpy().astype(np.float32), out)
        np.testing.assert_allclose(out, expected[b], atol=2e-5)


def test_losses_against_values_worked_out_by_hand():
    y = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    # Prediction 0.5 y: error energy 0.25 per sample over signal energy 1 -> ESR 0.25, MAE 0.5.
    assert float(esr(0.5 * y, y)) == pytest.approx(0.25)
    assert float(mae(0.5 * y, y)) == pytest.approx(0.5)
    h = pre_emphasis_fir()
    # h0 = 1, h1 = -0.005, h2 = -0.005 * 0.995; the taps sum to about 0.995^1999 = 4.4e-5 (DC blocked).
    assert float(h[0]) == 1.0 and float(h[1]) == pytest.approx(-0.005) and float(h[2]) == pytest.approx(-0.004975)
    assert abs(float(h.sum())) < 1e-3
    # pre_emphasize filters by FFT: the same as the direct causal convolution with h, no wrap-around.
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3000)))
    h64 = pre_emphasis_fir(dtype=torch.float64).numpy()
    direct = np.stack([np.convolve(row, h64)[:3000] for row in x.numpy()])
    np.testing.assert_allclose(pre_emphasize(x).numpy(), direct, atol=1e-9)
    np.testing.assert_allclose(pre_emphasize(x[0]).numpy(), direct[0], atol=1e-9)
    assert float(mrstft(y.repeat(1, 64), y.repeat(1, 64))) == 0.0
    m = metrics(np.zeros(1000), np.ones(1000))
    assert m["esr"] == pytest.approx(1 / (1 + 1e-5)) and m["mae"] == pytest.approx(1.0)


def make_pairs(n, rate=16000, seconds=1.0, gain_per_knob=1.0, seed=0):
    """Pairs of a toy device y = tanh(g x), g = 1 + 3 * drive / 10, for a fast learnable task."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        drive = float(rng.uniform(0, 10))
        t = np.arange(int(rate * seconds)) / rate
        x = (0.5 * np.sin(2 * np.pi * rng.uniform(80, 400) * t) * np.exp(-t * rng.uniform(0, 3))).astype(np.float32)
        x += (0.01 * rng.standard_normal(x.size)).astype(np.float32)
        y = np.tanh((1 + 3 * gain_per_knob * drive / 10) * x).astype(np.float32)
        pairs.append({"name": f"p{i}", "x": x, "y": y, "knobs": {"drive": drive},
                      "split": "test" if i == n - 1 else ("valid" if i == n - 2 else "train")})
    return pairs


@pytest.fixture
def toy_dataset(tmp_path):
    folder = tmp_path / "data"
    write_dataset(folder, 16000, {"drive": (0, 10)}, make_pairs(8))
    return folder


def write_config(tmp_path, **sections):
    cfg = {"data": {"folder": "data", "segment": 256, "warmup": 64},
           "model": {"conditioning": "concat", "hidden_size": 6},
           "train": {"batch_size": 8, "steps": 60, "validate_every": 10, "threads": 1, "lr": 0.01},
           "out": "run"}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_tiny_training_run_reduces_the_loss_and_writes_a_report(tmp_path, toy_dataset):
    report = train(write_config(tmp_path), log=lambda *_: None)
    history = report["history"]
    assert history[-1]["valid"] < 0.5 * history[0]["valid"]
    out = tmp_path / "run"
    assert (out / "loss_curves.png").stat().st_size > 1000 and "| p7 |" in (out / "report.md").read_text()
    assert report["test"][0]["pair"] == "p7" and report["params"] == 3 * 6 * (2 + 6) + 6 * 6 + 7
    bands = report["test"][0]["esr_bands"]  # where the error lies: octave bands adding up to the ESR
    assert sum(bands.values()) == pytest.approx(report["test"][0]["esr"], rel=1e-3)
    assert (out / "error_bands.png").stat().st_size > 1000 and "ESR by octave band" in (out / "report.md").read_text()
    twin, meta = load_conditioned_gru(out / "model.npz", num_conds=1)
    assert meta["knobs"] == {"drive": [0, 10]}


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, toy_dataset):
    whole = train(write_config(tmp_path), log=lambda *_: None)
    (tmp_path / "run" / "checkpoint.pt").unlink()
    assert train(write_config(tmp_path), log=lambda *_: None, steps_this_run=15) is None
    resumed = train(write_config(tmp_path), resume=True, log=lambda *_: None)
    assert [h["valid"] for h in resumed["history"]] == [h["valid"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]


def test_resume_with_more_steps_extends_a_plateau_run_as_a_longer_run(tmp_path, toy_dataset):
    longer = train(write_config(tmp_path, train={"ema": 0.5}), log=lambda *_: None)
    (tmp_path / "run" / "checkpoint.pt").unlink()
    train(write_config(tmp_path, train={"ema": 0.5, "steps": 30}), log=lambda *_: None)
    extended = train(write_config(tmp_path, train={"ema": 0.5}), resume=True, log=lambda *_: None)
    assert [h["valid"] for h in extended["history"]] == [h["valid"] for h in longer["history"]]
    assert extended["test"] == longer["test"]
    train(write_config(tmp_path, train={"ema": 0.5, "steps": 30, "lr_schedule": "cosine"}), log=lambda *_: None)
    with pytest.raises(ConfigError, match="made with another config"):  # cosine's curve depends on steps
        train(write_config(tmp_path, train={"ema": 0.5, "lr_schedule": "cosine"}), resume=True, log=lambda *_: None)
    train(write_config(tmp_path, train={"ema": 0.5, "steps": 25}), log=lambda *_: None)  # ends between validations
    with pytest.raises(ConfigError, match="made with another config"):
        train(write_config(tmp_path, train={"ema": 0.5}), resume=True, log=lambda *_: None)


def test_resume_refuses_another_recipe_but_takes_a_checkpoint_from_before_a_new_key(tmp_path, toy_dataset):
    assert train(write_config(tmp_path), log=lambda *_: None, steps_this_run=10) is None
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(ConfigError, match="made with another config"):
        train(write_config(tmp_path, train={"lr": 0.02}), resume=True, log=lambda *_: None)
    ckpt = torch.load(ckpt_path, weights_only=False)
    for key in ("init_from", "match_polarity", "device", "lr_schedule", "ema"):  # keys added to knobnet later, at their defaults
        del ckpt["config"]["train"][key]
    torch.save(ckpt, ckpt_path)
    assert train(write_config(tmp_path), resume=True, log=lambda *_: None)["steps"] == 60
    ckpt = torch.load(ckpt_path, weights_only=False)
    del ckpt["model"][next(iter(ckpt["model"]))]  # a model whose parameters have changed since
    torch.save(ckpt, ckpt_path)
    with pytest.raises(ConfigError, match="holds another version of this model"):
        train(write_config(tmp_path, train={"steps": 80}), resume=True, log=lambda *_: None)


def test_cosine_schedule_falls_to_zero_step_by_step_and_resumes_exactly(tmp_path, toy_dataset):
    cosine = {"lr_schedule": "cosine", "lr_patience": 0, "early_stop": 100}  # patience 0 would halve on every validation
    whole = train(write_config(tmp_path, train=cosine), log=lambda *_: None)
    # lr(t) = 0.01 * (1 + cos(pi t / 60)) / 2 after step t: 0.0075 at 20, 0.0025 at 40, 0 at 60.
    lrs = {h["step"]: h["lr"] for h in whole["history"]}
    assert lrs[20] == pytest.approx(0.0075) and lrs[40] == pytest.approx(0.0025) and lrs[60] == pytest.approx(0.0, abs=1e-12)
    assert whole["history"][-1]["valid"] < whole["history"][0]["valid"]
    (tmp_path / "run" / "checkpoint.pt").unlink()
    assert train(write_config(tmp_path, train=cosine), log=lambda *_: None, steps_this_run=25) is None
    resumed = train(write_config(tmp_path, train=cosine), resume=True, log=lambda *_: None)
    assert [h["lr"] for h in resumed["history"]] == [h["lr"] for h in whole["history"]]
    assert [h["valid"] for h in resumed["history"]] == [h["valid"] for h in whole["history"]]


def test_weight_average_validates_and_exports_the_average_and_resumes_exactly(tmp_path, toy_dataset):
    ema = {"ema": 0.5, "early_stop": 100}  # the warm-up cap (1 + t) / (10 + t) passes 0.5 at step 8
    whole = train(write_config(tmp_path, train=ema), log=lambda *_: None)
    raw = train(write_config(tmp_path, out="raw"), log=lambda *_: None)
    assert [h["train"] for h in whole["history"]] == [h["train"] for h in raw["history"]]  # the same raw training
    assert [h["valid"] for h in whole["history"]] != [h["valid"] for h in raw["history"]]  # validated: the average
    assert whole["best_valid_loss"] == min(h["valid"] for h in whole["history"])
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["ema"]["updates"] == 60 and whole["history"][-1]["valid"] == whole["best_valid_loss"]
    best = list(ckpt["state"]["best_model"].values())  # the best check is the last: its weights are the average's
    assert len(best) == len(ckpt["ema"]["shadow"]) and all(torch.equal(b, a) for b, a in zip(best, ckpt["ema"]["shadow"]))
    assert not torch.equal(best[0], ckpt["model"][next(iter(ckpt["state"]["best_model"]))])  # not the raw weights
    (tmp_path / "run" / "checkpoint.pt").unlink()
    assert train(write_config(tmp_path, train=ema), log=lambda *_: None, steps_this_run=25) is None
    resumed = train(write_config(tmp_path, train=ema), resume=True, log=lambda *_: None)
    assert [h["valid"] for h in resumed["history"]] == [h["valid"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]


@pytest.mark.parametrize("section, message", [
    ({"model": {"conditioning": "telepathy"}}, "unknown conditioning 'telepathy'"),
    ({"train": {"batch_size": "many"}}, "'train.batch_size' must be int"),
    ({"train": {"learning_rate": 1}}, "unknown key(s) in 'train': learning_rate"),
    ({"extras": {}}, "unknown section(s): extras"),
    ({"out": None}, "'out' is required"),
    ({"train": {"device": "tpu"}}, "train.device: device 'tpu' is not one of: auto, cpu, cuda"),
    ({"train": {"match_polarity": True}}, "train.match_polarity: model type 'gru' cannot invert its output"),
    ({"train": {"lr_schedule": "linear"}}, "train.lr_schedule 'linear' is not one of: plateau, cosine"),
    ({"train": {"ema": 1.0}}, "train.ema (a decay) must be at least 0 and below 1, got 1.0"),
] + ([] if torch.cuda.is_available() else
     [({"train": {"device": "cuda"}}, "train.device: device 'cuda' was asked for but torch sees no CUDA GPU")]))
def test_config_errors_name_the_key(tmp_path, toy_dataset, section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(write_config(tmp_path, **section), log=lambda *_: None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the GPU path of knobnet train is not run")
@pytest.mark.parametrize("model", [{"conditioning": "film", "hidden_size": 6},
                                   {"type": "lstm", "conditioning": "dynamichyper", "hidden_size": 4},
                                   {"type": "tcn", "channels": 4, "dilations": [1, 2], "kernel_size": 3}])
def test_training_on_the_gpu_matches_the_cpu(tmp_path, toy_dataset, model):
    """Same seed, same batches: the GPU run's losses follow the CPU run's (float32 rounding apart)."""
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = write_config(tmp_path, model=model, train={"device": device, "steps": 20}, out=f"run-{device}")
        runs[device] = train(cfg, log=lambda *_: None)
    assert [h["valid"] for h in runs["cuda"]["history"]] == pytest.approx([h["valid"] for h in runs["cpu"]["history"]],
                                                                           rel=1e-3)
    assert runs["cuda"]["test"][0]["esr"] == pytest.approx(runs["cpu"]["test"][0]["esr"], rel=1e-3)


def test_without_a_validation_split_every_knob_setting_is_validated():
    from effects.training.data import Pair
    from effects.training.train import validation_from_training
    pairs = [Pair(f"{k}{i}", np.zeros(4), np.zeros(4), {}, np.array([float(k)]), "train")
             for k, n in ((0, 5), (1, 1), (2, 5)) for i in range(n)]
    assert [p.name for p in validation_from_training(pairs)] == ["00", "10", "20", "01"]
    assert [p.name for p in validation_from_training(pairs[:2])] == ["00", "01"]


def test_esr_by_band_puts_the_error_where_it_is():
    """A 1 kHz error on a broadband target: the 800-1600 Hz band holds it all (0.1^2 / 1 = 0.01 of
    a unit-power target, up to the noise's own spread)."""
    from effects.training.losses import esr_by_band
    rate = 48000
    target = np.random.default_rng(0).standard_normal(rate)
    pred = target + 0.1 * np.sqrt(2) * np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)
    bands = esr_by_band(pred, target, rate)
    assert list(bands)[0] == "0-100" and list(bands)[-1] == "12800-24000"
    assert bands["800-1600"] == pytest.approx(0.01 / np.mean(target ** 2), rel=1e-6)
    assert sum(v for k, v in bands.items() if k != "800-1600") < 1e-12


def test_balanced_sampling_weighs_each_knob_setting_alike():
    """Settings recorded 5, 1 and 5 times: plain sampling draws the lone pair ~1/11 of the time,
    balanced sampling ~1/3 (4,000 draws: standard error under 0.008)."""
    from effects.training.data import Pair
    from effects.training.train import SegmentSampler
    pairs = [Pair(f"{k}{i}", np.full(8, float(k), np.float32), np.zeros(8, np.float32), {}, np.array([float(k)]),
                  "train") for k, n in ((0, 5), (1, 1), (2, 5)) for i in range(n)]
    for balance, share in ((False, 1 / 11), (True, 1 / 3)):
        x, _, c = SegmentSampler(pairs, 4, seed=0, balance_settings=balance).batch(4000)
        assert torch.equal(x[:, 0], c[:, 0])  # each segment carries its own pair's knobs
        assert float((c[:, 0] == 1).float().mean()) == pytest.approx(share, abs=0.03)


def test_a_target_that_starts_with_digital_silence_is_unmeasured_there(tmp_path):
    """The JVM targets start with 2,048 exact zeros while the inputs play: no recording. Such a head is
    found and named when the dataset loads, training segments score none of it, and neither do metrics."""
    from effects.training.data import MIN_UNMEASURED_SAMPLES, Pair, unmeasured_head
    from effects.training.train import SegmentSampler
    noisy = np.random.default_rng(0).standard_normal(1500).astype(np.float32)
    assert unmeasured_head(noisy, noisy) == 0
    late = np.r_[np.zeros(500, np.float32), noisy[500:]]
    assert unmeasured_head(noisy, late) == 500
    assert unmeasured_head(late, late) == 0  # silence in, silence out: measured
    short = np.r_[np.zeros(MIN_UNMEASURED_SAMPLES - 1, np.float32), noisy[MIN_UNMEASURED_SAMPLES - 1:]]
    assert unmeasured_head(noisy, short) == 0  # a zero crossing or two

    def mutate(folder, desc):  # the input only hisses there, so the toy's decaying sine still aligns
        for key, head in (("input", 1e-4 * noisy[:600]), ("target", 0.0)):
            path = folder / desc["pairs"][0][key]
            a, rate = sf.read(path, dtype="float32")
            a[:600] = head
            sf.write(path, a, rate, subtype="FLOAT")
    ds = load_dataset(dataset_with(tmp_path, mutate))
    assert [p.measured_from for p in ds.pairs] == [600, 0, 0]
    assert any(w.startswith("p0: the target starts with 600 samples (38 ms) of digital silence") for w in ds.warnings)

    marked = Pair("m", np.arange(10000, dtype=np.float32), np.zeros(10000, np.float32), {}, np.zeros(1), "train", 6000)
    x, _, _ = SegmentSampler([marked], 1500, seed=0, warmup=500).batch(2000)
    assert float(x[:, 500].min()) >= 6000  # every scored sample is recorded
    assert float(x[:, 0].min()) < 5600  # and warm-ups may start before the head ends
    same_name = Pair("m", -marked.x, marked.y, {}, np.zeros(1), "train")  # one DI file re-amped twice
    x, _, _ = SegmentSampler([marked, same_name], 1500, seed=0, warmup=500).batch(2000)
    assert float(x[x[:, 1] > 0][:, 500].min()) >= 6000 and float(x[:, 0].min()) < -5000
    plain = Pair("p", marked.x, marked.y, {}, np.zeros(1), "train")
    x_old, _, _ = SegmentSampler([plain], 1500, seed=3).batch(50)
    x_new, _, _ = SegmentSampler([plain], 1500, seed=3, warmup=500).batch(50)
    assert torch.equal(x_old, x_new)  # pairs without a head draw the same segments as before


def test_config_that_is_not_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def dataset_with(tmp_path, mutate):
    folder = tmp_path / "ds"
    pairs = make_pairs(3)
    write_dataset(folder, 16000, {"drive": (0, 10)}, pairs)
    mutate(folder, json.loads((folder / "dataset.json").read_text()))
    return folder


def _rewrite(folder, desc):
    (folder / "dataset.json").write_text(json.dumps(desc))


@pytest.mark.parametrize("case, message", [
    ("length", "input has 16000 samples but target 15000"),
    ("rate", "input is 16000 Hz but target is 22050 Hz"),
    ("misaligned", "samples (20.0 ms) behind the input"),
    ("silence", "target is silent"),
    ("knob range", "knob 'drive' = 12 is outside [0, 10]"),
    ("unknown knob", "unknown knob(s) volume"),
    ("missing file", "audio file not found"),
])
def test_dataset_validation_names_the_problem(tmp_path, case, message):
    def mutate(folder, desc):
        target = folder / desc["pairs"][0]["target"]
        y, rate = sf.read(target, dtype="float32")
        if case == "length":
            sf.write(target, y[:15000], rate, subtype="FLOAT")
        elif case == "rate":
            desc.pop("sample_rate")
            sf.write(target, y, 22050, subtype="FLOAT")
        elif case == "misaligned":
            sf.write(target, np.r_[np.zeros(320, np.float32), y[:-320]], rate, subtype="FLOAT")
        elif case == "silence":
            sf.write(target, np.zeros_like(y), rate, subtype="FLOAT")
        elif case == "knob range":
            desc["pairs"][0]["knobs"]["drive"] = 12
        elif case == "unknown knob":
            desc["pairs"][0]["knobs"]["volume"] = 1
        elif case == "missing file":
            target.unlink()
        _rewrite(folder, desc)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        load_dataset(dataset_with(tmp_path, mutate))


def test_clipping_is_a_warning_and_latency_is_measured(tmp_path):
    def mutate(folder, desc):
        target = folder / desc["pairs"][0]["target"]
        y, rate = sf.read(target, dtype="float32")
        sf.write(target, np.clip(y * 10, -1, 1), rate, subtype="FLOAT")
    ds = load_dataset(dataset_with(tmp_path, mutate))
    assert any("clips" in w for w in ds.warnings)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert estimate_latency(x, np.r_[np.zeros(37, np.float32), x[:-37]], 16000)[0] == 37


def test_corrupt_description(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable description"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset(tmp_path / "nowhere")


def test_finish_exports_the_best_weights_of_an_unfinished_run(tmp_path, toy_dataset):
    assert train(write_config(tmp_path), log=lambda *_: None, steps_this_run=20) is None
    report = train(write_config(tmp_path), resume=True, finish_now=True, log=lambda *_: None)
    assert report["steps"] == 20 and len(report["history"]) == 2
    assert (tmp_path / "run" / "model.npz").is_file() and report["test"]


@requires_shared
def test_distill_samples_part_of_a_knob_range_and_appends_to_a_dataset(tmp_path):
    from effects.training.distill import distill
    folder = tmp_path / "od3"
    common = dict(seconds_per_setting=0.2, synth_seconds=10.0)
    distill("od3", folder, ["drive", "tone"], train_settings=3, valid_settings=1, test_settings=1, **common)
    distill("od3", folder, ["drive", "tone"], train_settings=4, valid_settings=0, test_settings=0, seed=1,
            knob_limits={"drive": (8.0, 10.0)}, append=True, **common)
    ds = load_dataset(folder)
    added = [p for p in ds.pairs if p.name.startswith("seed1-")]
    assert len(ds.pairs) == 9 and len(added) == 4 and all(p.split == "train" for p in added)
    assert all(8.0 <= p.knobs["drive"] <= 10.0 for p in added)
    assert ds.knob_ranges == {"drive": (0.0, 10.0), "tone": (0.0, 10.0)}  # still the knobs' whole ranges
    for pair in ds.pairs[:3]:  # each target is the teacher at the pair's knobs from rest (no glide from the last pair's)
        np.testing.assert_allclose(pair.y, load_pedal("od3", **pair.knobs).process(pair.x), atol=1e-6)
    with pytest.raises(DatasetError, match="already holds pairs of seed 1"):  # the same seed again
        distill("od3", folder, ["drive", "tone"], train_settings=1, valid_settings=0, test_settings=0, seed=1,
                append=True, **common)
    with pytest.raises(ValueError, match="range 8:12 is not inside"):
        distill("od3", folder, ["drive", "tone"], train_settings=1, valid_settings=0, test_settings=0, seed=2,
                knob_limits={"drive": (8.0, 12.0)}, append=True, **common)
    with pytest.raises(DatasetError, match="cannot append pairs at 48000 Hz, knobs {'drive'"):  # before the teacher runs
        distill("od3", folder, ["drive"], train_settings=1, valid_settings=0, test_settings=0, seed=3,
                append=True, **common)
    assert len(load_dataset(folder).pairs) == 9


def test_distill_knob_ranges_and_appends_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    from app.cli import main
    from effects.training import distill as distill_module

    def no_work(*_, **__):
        raise AssertionError("distill did work before refusing")
    monkeypatch.setattr(distill_module, "training_inputs", no_work)  # the first work: reading and synthesizing inputs
    for knobs, message in (("peak_reduction,mode=0:1", "knob 'mode' is a switch"),
                           ("peak_reduction=50:120,mode", "range 50:120 is not inside [0, 100]"),
                           ("peak_reduction=80:50,mode", "range 80:50 is not inside"),
                           ("drive=5", "should read name=LOW:HIGH"), ("drive=", "should read name=LOW:HIGH"),
                           ("drive=a:b", "should read name=LOW:HIGH"), ("drive=1:2:3", "should read name=LOW:HIGH")):
        assert main(["distill", "la2a", str(tmp_path / "d"), "--knobs", knobs]) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="'gain' has a range but is not among the knobs sampled"):
        distill_module.distill("la2a", tmp_path / "d", ["peak_reduction"], knob_limits={"gain": (0.0, 10.0)})
    assert main(["distill", "la2a", str(tmp_path / "d"), "--knobs", "peak_reduction,mode", "--append"]) == 1
    assert "no dataset.json" in capsys.readouterr().err and not (tmp_path / "d").exists()
    write_dataset(tmp_path / "d", 16000, {"drive": (0, 10)}, make_pairs(1))
    assert main(["distill", "la2a", str(tmp_path / "d"), "--knobs", "peak_reduction,mode", "--append"]) == 1
    assert "cannot append pairs at 44100 Hz" in capsys.readouterr().err


def test_appending_pairs_of_another_rate_or_knob_set_is_refused(tmp_path, toy_dataset):
    with pytest.raises(DatasetError, match="cannot append pairs at 22050 Hz"):
        write_dataset(toy_dataset, 22050, {"drive": (0, 10)}, make_pairs(1), append=True)
    with pytest.raises(DatasetError, match="cannot append"):
        write_dataset(toy_dataset, 16000, {"drive": (0, 5)}, make_pairs(1), append=True)
    with pytest.raises(DatasetError, match="no dataset.json"):
        write_dataset(tmp_path / "empty", 16000, {"drive": (0, 10)}, make_pairs(1), append=True)
    write_dataset(toy_dataset, 16000, {"drive": (0, 10)}, [dict(p, name="extra") for p in make_pairs(1)], append=True)
    assert len(load_dataset(toy_dataset).pairs) == 9
