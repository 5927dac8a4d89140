"""The recurrent family: GRU and LSTM cells with concat, FiLM, static-hyper and dynamic-hyper
conditioning. Compiled ops against autograd and torch, the dynamic-hyper fold against the spec's
per-step definition, training model against streaming kernels, block-size invariance, weights-file
round trip, and a tiny ``knobnet train`` of an LSTM."""
import json

import numpy as np
import pytest
import torch

from app.cli import main as knobnet
from effects.pedal import ModelFileError
from effects.recurrent import CONDITIONING, GATES, load_conditioned_gru
from effects.training.data import write_dataset
from effects.training.gru_op import dynamic_hyper_recurrence
from effects.training.lstm_op import lstm_recurrence
from effects.training.rnn import ConditionedRNN, count_params
from tests.test_training import make_pairs

PAIRS = [(cell, cond) for cell in GATES for cond in CONDITIONING]
KNOBS = torch.tensor([[0.3, -0.5], [-1.0, 1.0]], dtype=torch.float64)


def small_model(cell, conditioning, seed=1):
    torch.manual_seed(seed)
    return ConditionedRNN(conditioning, hidden_size=12, num_conds=2, cell=cell, hyper_size=5, n_z=4).double()


def test_lstm_recurrence_gradients_and_agreement_with_torch_lstm():
    torch.manual_seed(0)
    B, T, H = 3, 6, 4
    args = [torch.randn(B, T, 4 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, H, 4 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, 4 * H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, H, dtype=torch.float64, requires_grad=True),
            torch.randn(B, H, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lstm_recurrence, args)
    lstm = torch.nn.LSTM(1, H, batch_first=True).double()
    x = torch.randn(B, T, 1, dtype=torch.float64)
    expected, _ = lstm(x)
    xi = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0
    torch.testing.assert_close(lstm_recurrence(xi, lstm.weight_hh_l0.T, lstm.bias_hh_l0), expected)


@pytest.mark.parametrize("cell", list(GATES))
def test_dynamic_hyper_recurrence_gradients(cell):
    torch.manual_seed(0)
    B, T, H, K, G = 2, 5, 3, 2, GATES[cell]

    def arg(*shape):
        return (0.5 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()
    x = torch.randn(B, T, dtype=torch.float64)
    args = [arg(B, G * K), arg(H, G * K), arg(K, G * K), arg(G * K), arg(K, 3 * G * H), arg(3 * G * H),
            arg(H, G * H), arg(G * H)]
    assert torch.autograd.gradcheck(lambda *a: dynamic_hyper_recurrence(cell == "lstm", x, *a), args)


def spec_dynamic_hyper(model: ConditionedRNN, x, c):
    """DynamicHyper-GRU/LSTM written per step from spec section 2.4, unfolded, in float64 torch."""
    p = dict(model.named_parameters())
    B, T = x.shape
    H, K, G = model.hidden_size, model.hyper_size, model.gates
    h, cm = x.new_zeros(B, H), x.new_zeros(B, H)
    hh, hc = x.new_zeros(B, K), x.new_zeros(B, K)
    ys = []
    for t in range(T):
        # 1. hyper cell on [h_{t-1}; c]
        i_hat = torch.cat([h, c], 1) @ p["hyper_rnn.x2h.weight"].T + p["hyper_rnn.x2h.bias"]
        g_hat = hh @ p["hyper_rnn.h2h.weight"].T + p["hyper_rnn.h2h.bias"]
        if G == 3:
            r, z = torch.sigmoid(i_hat[:, :2 * K] + g_hat[:, :2 * K]).split(K, 1)
            n = torch.tanh(i_hat[:, 2 * K:] + r * g_hat[:, 2 * K:])
            hh = n + z * (hh - n)
        else:
            gi, gf, gg, go = (i_hat + g_hat).split(K, 1)
            hc = torch.sigmoid(gf) * hc + torch.sigmoid(gi) * torch.tanh(gg)
            hh = torch.sigmoid(go) * torch.tanh(hc)
        # 2. embeddings, 3. per-gate scalings
        z_h = (hh @ p["z_h.weight"].T + p["z_h.bias"]).split(model.n_z, 1)
        z_x = (hh @ p["z_x.weight"].T + p["z_x.bias"]).split(model.n_z, 1)
        z_b = (hh @ p["z_b.weight"].T).split(model.n_z, 1)
        pre = []
        for k in range(G):
            d_h = z_h[k] @ p[f"d_h.{k}.weight"].T
            d_x = z_x[k] @ p[f"d_x.{k}.weight"].T
            d_b = z_b[k] @ p[f"d_b.{k}.weight"].T + p[f"d_b.{k}.bias"]
            pre.append((d_h * (h @ p[f"w_h.{k}"].T), d_x * (x[:, t:t + 1] @ p[f"w_x.{k}"].T) + d_b))
        # 4. gates
        if G == 3:
            r = torch.sigmoid(pre[0][0] + pre[0][1])
            z = torch.sigmoid(pre[1][0] + pre[1][1])
            n = torch.tanh(r * pre[2][0] + pre[2][1])
            h = n + z * (h - n)
        else:
            gi, gf, gg, go = (a + b for a, b in pre)
            cm = torch.sigmoid(gf) * cm + torch.sigmoid(gi) * torch.tanh(gg)
            h = torch.sigmoid(go) * torch.tanh(cm)
        ys.append(h @ p["linear_out.weight"][0] + p["linear_out.bias"][0])
    return torch.stack(ys, 1)


@pytest.mark.parametrize("cell", list(GATES))
def test_dynamic_hyper_model_follows_the_spec(cell):
    model = small_model(cell, "dynamichyper")
    x = torch.randn(2, 40, dtype=torch.float64) * 0.5
    torch.testing.assert_close(model(x, KNOBS), spec_dynamic_hyper(model, x, KNOBS))


def test_dynamic_hyper_gru_32_parameter_count():
    # Spec 2.5 counts 7,377 with the checkpoint's V of shape (H, N_c); ours is (H, C_in = 1): 3 x 32 fewer.
    assert count_params(ConditionedRNN("dynamichyper", 32, 2)) == 7377 - 3 * 32


def stream(twin, cond, x, block_size):
    s = twin.stream()
    twin.weights_into(cond, s.weights)
    out = np.empty(len(x), np.float32)
    for i in range(0, len(x), block_size):
        s.run(x[i:i + block_size], out[i:i + block_size])
    return out, s


@pytest.mark.parametrize("cell, conditioning", PAIRS)
def test_training_model_and_streaming_kernels_agree(cell, conditioning, tmp_path):
    model = small_model(cell, conditioning)
    x = torch.randn(2, 400, dtype=torch.float64) * 0.4
    expected = model(x, KNOBS).detach().numpy()
    model.export(tmp_path / "m.npz")
    twin, meta = load_conditioned_gru(tmp_path / "m.npz")
    assert (meta["cell"], meta["conditioning"]) == (cell, conditioning) and twin.kind == conditioning
    for b in range(2):
        out, _ = stream(twin, KNOBS[b].numpy(), x[b].numpy().astype(np.float32), 400)
        np.testing.assert_allclose(out, expected[b], atol=2e-5)


@pytest.mark.parametrize("cell, conditioning", PAIRS)
def test_stream_does_not_depend_on_block_size_and_reset_restarts_it(cell, conditioning):
    twin = small_model(cell, conditioning).streaming_twin()
    x = (0.4 * np.sin(np.arange(1000) * 0.07)).astype(np.float32)
    cond = np.array([0.2, -0.7], np.float32)
    whole, s = stream(twin, cond, x, len(x))
    for block_size in (1, 7, 128):
        np.testing.assert_array_equal(stream(twin, cond, x, block_size)[0], whole)
    s.reset()
    again = np.empty_like(x)
    s.run(x, again)
    np.testing.assert_array_equal(again, whole)


def audio_thread_peak_bytes(cell, conditioning, size):
    """Peak traced memory of 10 knob moves and blocks (the audio-thread calls) of a warm stream."""
    import tracemalloc
    twin = ConditionedRNN(conditioning, size, 2, mlp_size=size, n_mlp_blocks=3, cell=cell, hyper_size=size,
                          n_z=size).streaming_twin()
    x = (0.4 * np.sin(np.arange(32) * 0.07)).astype(np.float32)
    out = np.empty_like(x)
    s = twin.stream()
    cond = np.array([0.2, -0.7], np.float32)
    twin.weights_into(cond, s.weights)
    s.run(x, out)  # compiled and warm
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k in range(10):
            cond[0] = k / 10
            twin.weights_into(cond, s.weights)
            s.run(x, out)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cell, conditioning", PAIRS)
def test_knob_moves_and_blocks_allocate_no_arrays(cell, conditioning):
    """Python's call overhead is the same for any model size; a temporary array would grow with it:
    at size 64 the smallest vector a model holds is 64 float32 = 256 bytes of data."""
    tiny, big = (audio_thread_peak_bytes(cell, conditioning, size) for size in (2, 64))
    print(f"{cell}/{conditioning}: peak {tiny} bytes at size 2, {big} at size 64")
    assert big - tiny < 128


@pytest.mark.parametrize("cell, conditioning", PAIRS)
def test_weights_file_round_trip(cell, conditioning, tmp_path):
    model = small_model(cell, conditioning)
    model.export(tmp_path / "m.npz", meta={"name": "round trip"})
    twin, meta = load_conditioned_gru(tmp_path / "m.npz")
    assert meta["name"] == "round trip" and meta["hidden_size"] == 12
    assert twin.params == count_params(model) and twin.num_conds == 2
    x = (0.3 * np.sin(np.arange(300) * 0.11)).astype(np.float32)
    cond = np.array([-0.4, 0.9], np.float32)
    # float32 file vs float64 model weights: equal to float32 rounding of the output
    np.testing.assert_allclose(stream(twin, cond, x, 64)[0], stream(model.streaming_twin(), cond, x, 64)[0],
                               atol=1e-5)
    with pytest.raises(ModelFileError, match="takes 2 knobs, this pedal has 3"):
        load_conditioned_gru(tmp_path / "m.npz", num_conds=3)


def test_ops_per_sample_grow_with_the_cell_and_the_conditioning():
    ops = {pair: small_model(*pair).streaming_twin().ops_per_sample for pair in PAIRS}
    for cond in CONDITIONING:
        assert ops["lstm", cond] > ops["gru", cond]
    for cell in GATES:
        # the folded conditionings all run a plain cell; dynamic hyper adds a hyper cell and modulations
        assert ops[cell, "concat"] == ops[cell, "film"] == ops[cell, "statichyper"] < ops[cell, "dynamichyper"]


@pytest.mark.parametrize("conditioning", ["film", "dynamichyper"])
def test_knobnet_train_of_an_lstm_reduces_the_loss(tmp_path, conditioning):
    write_dataset(tmp_path / "data", 16000, {"drive": (0, 10)}, make_pairs(6, seconds=0.5))
    config = tmp_path / "lstm.yaml"
    config.write_text(json.dumps({
        "data": {"folder": "data", "segment": 256, "warmup": 64},
        "model": {"type": "lstm", "conditioning": conditioning, "hidden_size": 6, "hyper_size": 4, "n_z": 3},
        "train": {"batch_size": 8, "steps": 40, "validate_every": 10, "threads": 1, "lr": 0.01},
        "out": "run"}))
    assert knobnet(["train", str(config)]) in (0, None)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    history = report["history"]
    assert history[-1]["valid"] < 0.5 * history[0]["valid"]
    twin, meta = load_conditioned_gru(tmp_path / "run" / "model.npz", num_conds=1)
    assert meta["cell"] == "lstm" and twin.kind == conditioning
