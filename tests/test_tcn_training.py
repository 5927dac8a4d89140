"""FiLM-conditioned TCN training (spec section 6): the torch model equals its streaming twin and,
loaded with the SignalTrain weights, the TorchScript teacher; export/load round trip; a tiny
training run learns a toy compressor; the shipped LA-2A student loads without ../shared."""
import json
import warnings

import numpy as np
import pytest
import torch

from effects import ModelFileError, load_pedal
from effects import la2a
from effects.modelfile import read_state_dict, save_npz_model, shared_path
from effects.tcn import TCN_FORMAT, MicroTCN
from effects.training.data import write_dataset
from effects.training.tcn_model import FiLMTCN
from effects.training.train import ConfigError, train
from tests.conftest import requires_shared


def random_tcn(seed=0, **layout) -> FiLMTCN:
    """A small TCN with every parameter and BN statistic random (not the initial 1s and 0s)."""
    torch.manual_seed(seed)
    model = FiLMTCN(**{"channels": 5, "kernel_size": 3, "dilations": [1, 3, 9], **layout})
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                t.normal_(0.0, 0.3)
            elif name.endswith("relu.weight"):
                t.uniform_(-0.5, 0.5)
            elif name.endswith("res.weight") or "adaptor" in name:
                t.normal_(0.0, 0.5)
    return model.eval()


def run_stream(twin, x, cond, block_size):
    s = twin.stream()
    twin.weights_into(np.asarray(cond, np.float32), s.weights)
    out = np.empty(len(x), np.float32)
    for i in range(0, len(x), block_size):
        s.run(x[i:i + block_size], out[i:i + block_size])
    return out


@pytest.mark.parametrize("block_size", [1, 7, 128, 1000])
def test_training_model_and_streaming_twin_agree(block_size):
    model = random_tcn()  # eval mode: BN with its (random) running statistics
    x = (0.5 * torch.randn(2, 1000)).float()
    c = torch.tensor([[0.3, -0.8], [-1.0, 1.0]])
    with torch.no_grad():
        expected = model(x, c).numpy()
    twin = model.streaming_twin()
    assert twin.receptive_field == model.receptive_field == 1 + 2 * (1 + 3 + 9)
    for b in range(2):
        out = run_stream(twin, x[b].numpy(), c[b].numpy(), block_size)
        np.testing.assert_allclose(out, expected[b], atol=1e-4, rtol=0)
    assert np.abs(expected[0] - expected[1]).max() > 0.05  # the conditions matter


def test_forward_assumes_silence_before_the_input():
    """Silence padding is exact: the output for x equals the tail of the output for (zeros, x)."""
    model = random_tcn(seed=3)
    x = 0.5 * torch.randn(1, 300)
    c = torch.tensor([[0.2, 0.4]])
    with torch.no_grad():
        padded = model(torch.cat([torch.zeros(1, 80), x], dim=1), c)[:, 80:]
        torch.testing.assert_close(model(x, c), padded, atol=1e-6, rtol=0)


def test_export_and_load_round_trip(tmp_path):
    model = random_tcn(seed=1, channels=6, kernel_size=4, dilations=[1, 5])
    path = tmp_path / "m.npz"
    model.export(path, meta={"knobs": {"peak_reduction": [0, 100], "mode": [0, 1]}})
    loaded = MicroTCN.load(path)
    twin = model.streaming_twin()
    assert (loaded.channels, loaded.kernel_size, list(loaded.dilations)) == (6, 4, [1, 5])
    assert loaded.params == twin.params == sum(p.numel() for p in model.parameters())
    assert loaded.meta["knobs"] == {"peak_reduction": [0, 100], "mode": [0, 1]}
    x = (0.4 * np.random.default_rng(0).standard_normal(600)).astype(np.float32)
    np.testing.assert_array_equal(run_stream(loaded, x, [0.1, -0.2], 64), run_stream(twin, x, [0.1, -0.2], 64))
    pedal = la2a.LA2A(model_path=path)  # a knobnet TCN on the LA-2A's knobs plays in the pedal
    assert pedal.info()["receptive_field"] == 1 + 3 * 6


def test_files_of_another_kind_or_layout_are_refused(tmp_path):
    model = random_tcn()
    path = tmp_path / "m.npz"
    model.export(path, meta={"knobs": {"drive": [0, 10], "tone": [0, 10]}})
    with pytest.raises(ModelFileError, match="peak_reduction and mode, not drive, tone"):
        la2a.LA2A(model_path=path)
    save_npz_model(path, TCN_FORMAT, model.numpy_state(), {**model.config(), "dilations": [1, 3]})  # 3 blocks
    with pytest.raises(ModelFileError, match="missing blocks.2|more than 2 TCN blocks"):
        MicroTCN.load(path)


@requires_shared
def test_signaltrain_weights_in_the_training_model_match_the_torchscript_teacher():
    path = shared_path(*la2a.SHARED_MODEL)
    model = FiLMTCN()  # the defaults are TCN-300-C
    state = read_state_dict(path)
    model.load_state_dict({k: torch.tensor(v).to(model.state_dict()[k].dtype) for k, v in state.items()})
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the reader of these files
        reference = torch.jit.load(str(path), map_location="cpu").eval()
    x = 0.3 * torch.randn(1, 3000, generator=torch.Generator().manual_seed(0))
    p = torch.tensor([[1.0, 0.7]])
    with torch.no_grad():
        expected = reference(torch.cat([torch.zeros(1, 1, 13332), x[:, None]], dim=-1), p[:, None]).reshape(-1)
        torch.testing.assert_close(model(x, p)[0], expected, atol=1e-5, rtol=0)


def toy_compressor_pairs(n, rate=16000, seconds=1.0, seed=0):
    """y = x / (1 + 4 d env), env the mean |x| of the last 32 samples, d = depth / 10: a toy
    level-dependent device with memory that a TCN of receptive field > 32 can learn."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        depth = float(rng.uniform(0, 10))
        t = np.arange(int(rate * seconds)) / rate
        x = np.sin(2 * np.pi * rng.uniform(80, 400) * t) * np.exp(-t * rng.uniform(0, 3))
        x = (x * np.interp(t, [0, seconds], rng.uniform(0.05, 0.8, 2))).astype(np.float32)
        env = np.convolve(np.abs(x), np.ones(32) / 32)[:x.size]
        y = (x / (1 + 4 * depth / 10 * env)).astype(np.float32)
        pairs.append({"name": f"p{i}", "x": x, "y": y, "knobs": {"depth": depth},
                      "split": "test" if i == n - 1 else ("valid" if i == n - 2 else "train")})
    return pairs


def write_tcn_config(tmp_path, **model):
    write_dataset(tmp_path / "data", 16000, {"depth": (0, 10)}, toy_compressor_pairs(8))
    cfg = {"data": {"folder": "data", "segment": 256, "warmup": 64},
           "model": {"type": "tcn", "channels": 4, "kernel_size": 3, "dilations": [1, 4, 16], **model},
           "loss": {"pre_emphasis": False},
           "train": {"batch_size": 8, "steps": 60, "validate_every": 10, "threads": 1, "lr": 0.01},
           "out": "run"}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.mark.parametrize("batchnorm", [True, False])
def test_tiny_tcn_training_run_reduces_the_loss_and_exports_a_streamable_model(tmp_path, batchnorm):
    report = train(write_tcn_config(tmp_path, batchnorm=batchnorm), log=lambda *_: None)
    history = report["history"]
    assert history[-1]["valid"] < 0.5 * history[0]["valid"]
    assert report["ops_per_sample"] == 2 * (3 * 4 + 2 * 3 * 4 * 4) + 3 * 4 * 6 + 2 * 4 + 1 + 30
    loaded = MicroTCN.load(tmp_path / "run" / "model.npz", num_conds=1)
    assert list(loaded.dilations) == [1, 4, 16] and loaded.meta["knobs"] == {"depth": [0, 10]}
    assert report["test_mean"]["esr"] < 0.2
    assert loaded.meta["batchnorm"] == batchnorm
    if not batchnorm:  # BN stayed the identity: the folded scale is the FiLM gamma itself
        np.testing.assert_array_equal(loaded.bn_mean, 0.0)
        np.testing.assert_allclose(loaded.bn_var + 1e-5, 1.0, rtol=1e-7)


def test_bad_tcn_layout_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dilations"):
        train(write_tcn_config(tmp_path, dilations=[]), log=lambda *_: None)


def test_default_la2a_is_the_shipped_student_and_needs_no_shared_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(la2a, "shared_path", lambda *parts: tmp_path.joinpath(*parts))
    pedal = load_pedal("la2a", peak_reduction=100)
    assert pedal.model_path == la2a.SHIPPED_WEIGHTS and "knobs" in pedal.model.meta
    loud = 0.5 * np.sin(2 * np.pi * 440 / 44100 * np.arange(44100)).astype(np.float32)
    y = pedal.process(loud)
    assert np.all(np.isfinite(y)) and pedal.gain_reduction_db < -3.0  # it compresses a loud tone
    assert pedal.info()["params"] < 50_737 and pedal.info()["ops_per_sample"] < 81_567  # cheaper than the teacher



def test_warmup_shorter_than_the_receptive_field_is_a_config_error(tmp_path):
    path = write_tcn_config(tmp_path)  # receptive field 1 + 2 * (1 + 4 + 16) = 43
    cfg = json.loads(path.read_text())
    cfg["data"]["warmup"] = 41
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"data.warmup \(41\) is shorter than the model's receptive field \(43"):
        train(path, log=lambda *_: None)


def test_init_from_starts_a_run_from_another_runs_best_weights(tmp_path):
    first = train(write_tcn_config(tmp_path), log=lambda *_: None)
    path = tmp_path / "cfg.yaml"
    cfg = json.loads(path.read_text())
    cfg["out"] = "second"
    cfg["train"].update(steps=10, validate_every=10, init_from="run/checkpoint.pt")
    path.write_text(json.dumps(cfg))
    second = train(path, log=lambda *_: None)
    assert second["history"][0]["valid"] < 0.5 * first["history"][0]["valid"]  # far past a fresh start
    cfg["train"]["init_from"] = "nothing/checkpoint.pt"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="train.init_from: no checkpoint at"):
        train(path, log=lambda *_: None)
