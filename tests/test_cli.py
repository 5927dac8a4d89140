"""The knobnet command line: pedals, render round trips, bench, and every bad-input case."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from app.cli import main, parse_chain
from effects import load_pedal
from tests.conftest import guitar_like, requires_shared



def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clip(tmp_path):
    x = guitar_like(48000, 0.3)
    path = tmp_path / "in.wav"
    sf.write(path, x, 48000, subtype="FLOAT")
    return path, x


def test_pedals_lists_knobs_with_ranges_and_defaults(capsys):
    code, out, _ = run(capsys, "pedals")
    assert code == 0
    assert "od3" in out and "drive" in out and "0..10" in out and "default 5" in out


def test_render_round_trip_equals_the_pedal(capsys, clip, tmp_path):
    path, x = clip
    out_path = tmp_path / "out.wav"
    code, out, err = run(capsys, "render", str(path), str(out_path), "--chain", "od3 drive=6 tone=3 level=5",
                         "--block-size", "100")
    assert code == 0, err
    y, rate = sf.read(out_path, dtype="float32")
    assert rate == 48000 and sf.info(out_path).subtype == "FLOAT"
    np.testing.assert_allclose(y, load_pedal("od3", drive=6, tone=3).process(x), atol=1e-6)
    assert "drive=6" in out


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_render_accepts_stereo_at_another_rate_in_any_sample_format(capsys, tmp_path, subtype):
    x = guitar_like(44100, 0.3)
    path = tmp_path / "in.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), 44100, subtype=subtype)
    out_path = tmp_path / "out.wav"
    code, _, err = run(capsys, "render", str(path), str(out_path), "--chain", "od3")
    assert code == 0, err
    assert "mixed down to mono" in err and "resampled from 44100 Hz to 48000 Hz" in err
    y, rate = sf.read(out_path, dtype="float32")
    assert rate == 44100 and y.ndim == 1 and len(y) == len(x)
    assert np.sqrt(np.mean(y ** 2)) > 0.01


def test_chain_of_two_pedals_and_switch_names(capsys, clip, tmp_path):
    path, x = clip
    out_path = tmp_path / "out.wav"
    code, _, err = run(capsys, "render", str(path), str(out_path), "--chain", "od3 drive=2 | od3 drive=8 level=2")
    assert code == 0, err
    a, b = load_pedal("od3", drive=2), load_pedal("od3", drive=8, level=2)
    np.testing.assert_allclose(sf.read(out_path, dtype="float32")[0], b.process(a.process(x)), atol=1e-5)


def test_parse_chain():
    assert parse_chain("od3 drive=6 | la2a mode=limit") == [("od3", {"drive": "6"}), ("la2a", {"mode": "limit"})]
    for bad in ("", "od3 |", "od3 drive", "od3 drive=", "drive=3", "od3 drive=1 drive=2"):
        with pytest.raises(ValueError, match="malformed --chain"):
            parse_chain(bad)


BAD_CASES = {
    "unknown pedal": (["--chain", "fuzz99"], "unknown pedal 'fuzz99'"),
    "unknown knob": (["--chain", "od3 volume=3"], "no knob 'volume'"),
    "knob out of range": (["--chain", "od3 drive=11"], "outside 0..10"),
    "knob not a number": (["--chain", "od3 drive=high"], "needs a number"),
    "malformed chain": (["--chain", "od3 drive"], "malformed --chain"),
    "bad --model": (["--chain", "od3", "--model", "od3"], "PEDAL=PATH"),
    "model of an unknown pedal": (["--chain", "od3", "--model", "nope=x.pt"], "unknown pedal 'nope'"),
    "missing model file": (["--chain", "od3", "--model", "od3=/nonexistent/m.pt"], "model file not found"),
    "block size": (["--chain", "od3", "--block-size", "0"], "block-size must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_arguments_give_one_line_errors_and_no_output_file(capsys, clip, tmp_path, case):
    path, _ = clip
    extra, message = BAD_CASES[case]
    out_path = tmp_path / "out.wav"
    code, _, err = run(capsys, "render", str(path), str(out_path), *extra)
    assert code == 1
    assert message in err and err.count("\n") == 1 and err.startswith("knobnet: error:")
    assert list(tmp_path.iterdir()) == [path]


@requires_shared
def test_model_of_the_wrong_kind(capsys, clip, tmp_path):
    from effects.modelfile import shared_path
    path, _ = clip
    la2a = shared_path("models", "la2a-microtcn", "traced_10-LSTM-32__1-32__fraction-1.0-bs32.pt")
    code, _, err = run(capsys, "render", str(path), str(tmp_path / "o.wav"), "--chain", "od3", "--model", f"od3={la2a}")
    assert code == 1 and "is not a StaticHyper-GRU-32 model file" in err


@pytest.mark.parametrize("content, message", [
    (None, "audio file not found"),
    (b"RIFF\x00\x00garbage that is not a wave file" * 10, "not a readable audio file"),
    ("empty", "holds no samples"),
])
def test_bad_input_files(capsys, tmp_path, content, message):
    path = tmp_path / "in.wav"
    if content == "empty":
        sf.write(path, np.zeros(0, np.float32), 48000)
    elif content is not None:
        path.write_bytes(content)
    out_path = tmp_path / "out.wav"
    code, _, err = run(capsys, "render", str(path), str(out_path), "--chain", "od3")
    assert code == 1 and message in err
    assert not out_path.exists() and not list(tmp_path.glob(".out.wav*"))


def test_nan_samples_are_silenced_with_one_warning(capsys, tmp_path):
    x = guitar_like(48000, 0.3)
    x[1000:1010] = np.nan
    x[5000] = np.inf
    path = tmp_path / "in.wav"
    sf.write(path, x, 48000, subtype="FLOAT")
    code, _, err = run(capsys, "render", str(path), str(tmp_path / "out.wav"), "--chain", "od3", "--block-size", "512")
    assert code == 0
    assert err.count("NaN or infinite") == 1
    assert np.all(np.isfinite(sf.read(tmp_path / "out.wav")[0]))


def test_unwritable_output_leaves_nothing(capsys, clip, tmp_path):
    path, _ = clip
    code, _, err = run(capsys, "render", str(path), str(tmp_path / "no" / "out.wav"), "--chain", "od3")
    assert code == 1 and "output folder does not exist" in err


def test_bench_json(capsys):
    import numba
    numba.njit(parallel=True)(lambda a: a.sum())(np.ones(4))  # numba's threads run before the bench
    code, out, _ = run(capsys, "bench", "od3", "--seconds", "0.05", "--json")
    assert code == 0
    assert numba.njit(lambda x: x + 1)(1) == 2  # and numba still compiles after it (it rereads its environment)
    rows = json.loads(out)
    assert rows[0]["name"] == "od3" and rows[0]["params"] == 30297
    assert set(rows[0]["rtf"]) == {"32", "64", "128", "512", "2048"} and all(v > 0 for v in rows[0]["rtf"].values())


def test_console_script_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app.cli", "pedals"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "od3" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "app.cli", "render", "missing.wav", str(tmp_path / "o.wav"),
                           "--chain", "od3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip() == "knobnet: error: audio file not found: missing.wav"
