"""Board state, bypass crossfade, rack processing and versioned presets."""
import json

import numpy as np
import pytest

from app.board import BYPASS_FADE_MS, PRESET_VERSION, Board, PresetError, crossfade
from conftest import guitar_like


@pytest.fixture
def board():
    """jvm (shipped weights, 44.1 kHz behind a rate adapter) twice on a 48 kHz board."""
    b = Board(48000)
    b.add("jvm")
    b.add("jvm")
    b.slots[1].pedal.set_knobs(gain=8)
    return b


def run(rack, x, block):
    y = np.zeros_like(x)
    for i in range(0, x.size, block):
        rack.process(x[i:i + block], y[i:i + block])
    return y


def test_default_board_skips_what_is_missing_with_a_message():
    board, messages = Board.default(48000, order=("nosuch", "jvm"))
    assert board.order() == ["jvm"]
    assert messages == ["nosuch: not available in this build, left off the board"]


def test_move_and_remove_change_order(board):
    board.slots[0].pedal.set_knobs(bass=1)
    first = board.slots[0]
    board.move(0, 1)
    assert board.slots[1] is first
    with pytest.raises(IndexError):
        board.move(0, 2)
    board.remove(1)
    assert board.slots[0].pedal.knob_values()["gain"] == 8


def test_crossfade_ramps_linearly_to_target():
    dry, wet = np.zeros(6, np.float32), np.ones(6, np.float32)
    out = np.zeros(6, np.float32)
    mix = np.array([1.0, 0.0], np.float32)
    crossfade(dry, wet, out, mix, np.float32(0.25))
    # g steps 0.25 per sample before each output: 0.25, 0.5, 0.75, 1, 1, 1
    np.testing.assert_allclose(out, [0.25, 0.5, 0.75, 1, 1, 1])
    assert mix[1] == 1.0


def test_bypassed_rack_passes_input_through_and_engaging_fades_in(board):
    x = guitar_like(48000, 0.2)
    board.set_bypass(0, True)
    board.set_bypass(1, True)
    board.slots[0].mix[1] = board.slots[1].mix[1] = 0.0  # already faded out
    rack = board.rack()
    delay = rack.latency_samples  # bypassed pedals delay as much as engaged ones (resampling)
    assert delay > 0 and board.latency_samples == delay
    np.testing.assert_array_equal(run(rack, x, 128), np.concatenate([np.zeros(delay, np.float32), x[:-delay]]))
    board.set_bypass(1, False)
    y = run(rack, x, 128)
    fade = int(BYPASS_FADE_MS * 1e-3 * 48000)  # 480 samples
    # The first sample is 1/480 wet: within 1/480 * |wet - dry| of the dry (delayed) input.
    assert abs(y[0] - x[-delay]) <= 2.0 / fade * (abs(x[-delay]) + 1.0)
    assert board.slots[1].mix[1] == 1.0
    assert np.max(np.abs(np.diff(y))) < 0.5  # no step anywhere


def test_rack_output_does_not_depend_on_block_size():
    x = guitar_like(48000, 0.2)
    outs = []
    for block in (1, 64, 4096):
        b = Board(48000)
        b.add("jvm")
        b.set_bypass(0, True)  # fading out over the first 480 samples
        outs.append(run(b.rack(), x, block))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-5)


def test_preset_round_trip(board, tmp_path):
    board.move(1, 0)
    board.set_bypass(1, True)
    path = tmp_path / "board.json"
    board.save(path)
    other = Board(48000)
    other.load_preset(path)
    assert other.to_preset() == board.to_preset()
    assert [s.bypassed for s in other.slots] == [False, True]
    assert other.slots[0].pedal.knob_values()["gain"] == 8
    assert json.loads(path.read_text())["version"] == PRESET_VERSION


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "knobnet-board", "version": 99, "pedals": []}', "preset version 99 is not supported"),
    ('{"format": "other"}', "not a knobnet board preset"),
    ('{"format": "knobnet-board", "version": 1, "pedals": [{"name": "nosuch"}]}', "unknown pedal 'nosuch'"),
    ('{"format": "knobnet-board", "version": 1, "pedals": [{"name": "jvm", "knobs": {"gain": 99}}]}',
     "outside 0..10"),
    ('{"format": "knobnet-board", "version": 1, "pedals": [{"name": "jvm", "model": "/no/such.npz"}]}',
     r"pedal #1 \(jvm\): model file not found"),
])
def test_bad_preset_gives_one_line_and_leaves_board_untouched(board, tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    before = board.to_preset()
    slots = list(board.slots)
    with pytest.raises(PresetError, match=message) as info:
        board.load_preset(path)
    assert "\n" not in str(info.value)
    assert board.slots == slots and board.to_preset() == before
