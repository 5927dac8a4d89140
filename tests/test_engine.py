"""The engine without a device: process_block, rings, file player, rack swap, recorder, render."""
import numpy as np
import pytest
import soundfile as sf

from app.board import Board
from app.engine import AudioSettings, Engine, FilePlayer, NullStream, Recorder, Ring, render_board
from conftest import guitar_like


@pytest.fixture
def board():
    b = Board(48000)
    b.add("jvm")
    return b


def test_ring_returns_newest_samples_across_the_wrap():
    ring = Ring.allocate(8)
    ring.write(np.arange(6, dtype=np.float32))
    ring.write(np.arange(6, 11, dtype=np.float32))  # wraps: buffer holds 3..10
    np.testing.assert_array_equal(ring.latest(4), [7, 8, 9, 10])
    got, pos = ring.since(8)
    np.testing.assert_array_equal(got, [8, 9, 10])
    assert pos == 11


def test_file_player_loops_and_stops():
    player = FilePlayer(np.arange(5, dtype=np.float32))
    out = np.zeros(7, np.float32)
    player.read(out)
    np.testing.assert_array_equal(out, [0, 1, 2, 3, 4, 0, 1])
    player.loop = False
    player.read(out)
    np.testing.assert_array_equal(out, [2, 3, 4, 0, 0, 0, 0])
    assert not player.playing


def test_empty_board_passes_the_clip_with_input_gain_and_volume():
    engine = Engine(Board(48000).rack(), 48000)
    engine.set_player(FilePlayer(np.full(256, 0.25, np.float32)))
    engine.input_gain[:] = 2.0  # already settled: no ramp
    engine.output_volume[:] = 0.5
    out = np.zeros(128, np.float32)
    engine.process_block(None, out)
    np.testing.assert_allclose(out, 0.25)  # 0.25 * 2 * 0.5
    assert engine.read_peaks() == (0.5, 0.25)
    assert engine.read_peaks() == (0.0, 0.0)  # reading clears them


def test_clip_counter_counts_full_scale_blocks():
    engine = Engine(Board(48000).rack(), 48000)
    engine.set_player(FilePlayer(np.full(256, 1.0, np.float32)))
    out = np.zeros(128, np.float32)
    engine.process_block(None, out)
    assert list(engine.clips) == [1, 1]


def test_rack_swap_fades_out_then_in_without_a_step():
    x = np.full(48000, 0.5, np.float32)
    engine = Engine(Board(48000).rack(), 48000)
    engine.set_player(FilePlayer(x))
    engine.stream = object()  # as if running: swaps go through the callback
    out = np.zeros(128, np.float32)
    engine.process_block(None, out)
    engine.set_rack(Board(48000).rack())
    a, b = np.zeros(128, np.float32), np.zeros(128, np.float32)
    engine.process_block(None, a)
    engine.process_block(None, b)
    # a fades 0.5 -> 0 (0.5 * (1 - i/128)), b fades 0 -> 0.5 (0.5 * i/128): steps of 0.5/128 at most.
    np.testing.assert_allclose(a, 0.5 * (1 - np.arange(128) / 128), atol=1e-6)
    np.testing.assert_allclose(b, 0.5 * np.arange(128) / 128, atol=1e-6)
    assert engine._next_rack is None


def test_callback_counts_callbacks_and_status_as_xruns(board):
    engine = Engine(board.rack(), 48000)
    out = np.zeros((64, 2), np.float32)
    engine._output_callback(out, 64, None, "")
    engine._output_callback(out, 64, None, "output underflow")
    stats = engine.callback_stats()
    assert stats["callbacks"] == 2 and stats["xruns"] == 1 and stats["p99_ms"] > 0


def test_null_stream_runs_in_real_time_without_a_device(board):
    engine = Engine(board.rack(), 48000)
    engine.set_player(FilePlayer(guitar_like(48000, 1.0)))
    engine.start(AudioSettings(block_size=256), use_device=False)
    assert isinstance(engine.stream, NullStream)
    import time
    time.sleep(0.5)
    engine.stop()
    # Paced, not free-running: 0.5 s is ~94 blocks of 256 at most (a starved thread does fewer).
    assert 0 < engine.callbacks[0] <= 120
    assert np.abs(engine.scope_out.latest(4096)).max() > 0


def test_recorder_writes_what_the_board_played(tmp_path, board):
    engine = Engine(board.rack(), 48000)
    engine.set_player(FilePlayer(guitar_like(48000, 0.1)))
    rec = Recorder(engine, tmp_path / "take.wav")
    out = np.zeros(128, np.float32)
    played = []
    for _ in range(10):
        engine.process_block(None, out)
        played.append(out.copy())
    rec.close()
    y, rate = sf.read(tmp_path / "take.wav", dtype="float32")
    assert rate == 48000
    np.testing.assert_array_equal(y, np.concatenate(played))


def test_render_board_matches_the_board_and_skips_bypassed(tmp_path, board):
    from effects import Chain, load_pedal
    from effects.render import render
    x = guitar_like(48000, 0.3)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    board.slots[0].pedal.set_knobs(gain=7)
    board.add("jvm")
    board.set_bypass(1, True)
    calls = []
    render_board(board, tmp_path / "in.wav", tmp_path / "out.wav", progress=lambda d, t, e: calls.append(d))
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    expected = render(Chain([load_pedal("jvm", gain=7)], sample_rate=48000), x)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert calls and calls[-1] >= x.size


def test_settings_are_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOBNET_CONFIG_DIR", str(tmp_path))
    assert AudioSettings.load() == AudioSettings()
    AudioSettings(output_device="dummy", sample_rate=44100, block_size=256, source="file").save()
    assert AudioSettings.load() == AudioSettings(None, "dummy", 44100, 256, "file")
    (tmp_path / "audio.json").write_text("{corrupt")
    assert AudioSettings.load() == AudioSettings()


def _steady_out(process, n=4800):
    """The newest n output samples once at least 0.3 s more has played (the knob ramps and fades
    have settled)."""
    import time
    start = int(process.scope_out.written[0])
    deadline = time.monotonic() + 20
    while int(process.scope_out.written[0]) < start + 14400:
        assert time.monotonic() < deadline, "the engine process stopped producing blocks"
        time.sleep(0.02)
    return process.scope_out.latest(n), process.scope_in.latest(n)


def test_engine_process_runs_the_board_and_takes_knobs_bypass_and_new_racks():
    """The engine the window uses: another process, commands over a pipe, meters in shared memory."""
    from app.engine_process import AudioProcess
    board = Board(48000)
    od3 = board.add("od3")
    process = AudioProcess(board.sample_rate)
    process.set_rack(board.slots)
    try:
        assert "no audio device" in process.start(AudioSettings(block_size=256), use_device=False)
        t = np.arange(48000) / 48000
        process.set_player((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), "sine")
        y, x = _steady_out(process)
        assert process.running_slot_ids() == (od3.id,)
        assert process.slot_cpu_s(od3) > 0 and process.xruns[0] == 0
        assert np.abs(y - x).max() > 0.05  # the overdrive changes the sine
        quiet = np.sqrt(np.mean(y ** 2))
        process.set_knobs(od3, level=9.0)
        y, _ = _steady_out(process)
        assert np.sqrt(np.mean(y ** 2)) > 1.5 * quiet  # the knob reached the engine's pedal
        process.set_bypass(od3, True)
        y, x = _steady_out(process)
        np.testing.assert_allclose(y, x, atol=1e-6)  # bypassed: the output is the input
        process.input_gain[0] = 0.5  # shared memory: the GUI writes the target directly
        y, x = _steady_out(process)
        np.testing.assert_allclose(np.abs(x).max(), 0.15, rtol=1e-3)
        second = board.add("od3")
        process.set_rack([second, od3])
        _steady_out(process)
        assert process.running_slot_ids() == (second.id, od3.id)
        assert process.poll_messages() == []
    finally:
        process.close()
    assert not process.alive


def test_reorder_crossfades_from_the_old_order_to_the_new_with_the_pedals_state():
    """A rack of copies (as the engine process builds) takes the running pedals' state after the
    first block that follows the swap request; the next block is a crossfade between both orders,
    then the new order plays on: no dip."""
    import copy
    from app.board import Rack
    from app.engine import crossfade_blocks
    board = Board(48000)
    a, b = board.add("od3"), board.add("od3")
    a.pedal.set_knobs(drive=9.0, level=3.0)
    b.pedal.set_knobs(drive=1.0, tone=9.0)
    engine = Engine(board.rack(), 48000)
    x = guitar_like(48000, 0.2)
    engine.set_player(FilePlayer(x))
    engine.stream = object()  # as if running: swaps go through the callback
    new_order = Rack([copy.deepcopy(b), copy.deepcopy(a)], 48000)  # copied now: stale by the swap
    new_order.plan_sync(engine.rack)  # the plan refers to the live arrays: it copies them at the swap
    out, expected, expected_new = (np.zeros(256, np.float32) for _ in range(3))
    for _ in range(10):
        engine.process_block(None, out)
    old_ref = Rack([copy.deepcopy(a), copy.deepcopy(b)], 48000)
    engine.set_rack(new_order)
    engine.process_block(None, out)  # the old order plays this block; then the copies sync
    old_ref.process(x[2560:2816], expected)
    np.testing.assert_array_equal(out, expected)
    new_ref = Rack([copy.deepcopy(b), copy.deepcopy(a)], 48000)  # both orders from the synced state
    engine.process_block(None, out)
    old_ref.process(x[2816:3072], expected)
    new_ref.process(x[2816:3072], expected_new)
    crossfade_blocks(expected, expected_new)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert engine.rack is new_order
    engine.process_block(None, out)
    new_ref.process(x[3072:3328], expected)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.abs(expected_new - expected_new.mean()).max() > 0.01  # the pedals did play


def test_default_board_in_silence_plays_nothing_through_start_and_bypass():
    """The pedals rest at zero (``effects.rest.SilentTwin``): the default board's start and each pedal's
    bypass, both ways, play nothing in silence (before, the OD-3's DC offset through the JVM thumped)."""
    board, _ = Board.default(48000)
    rack = board.rack()
    silence = np.zeros(128, np.float32)
    out = np.empty(128, np.float32)

    def play(blocks=60):
        peak = 0.0
        for _ in range(blocks):
            rack.process(silence, out)
            peak = max(peak, float(np.abs(out).max()))
        return peak

    assert play() < 1e-4
    for i in range(len(board.slots)):
        board.set_bypass(i, True)
        assert play() < 1e-4
        board.set_bypass(i, False)
        assert play() < 1e-4
