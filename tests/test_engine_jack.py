"""Real-time engine test: a JACK server (dummy backend, 48 kHz, 128-frame periods) drives the
sounddevice stream of the real app for at least 60 s, with the window open and redrawing, an
inspector open, knobs moving and the board reordered while it plays.

Reports callbacks, xruns (goal 0) and the callback time p50/p99/max; see them with
``python -m pytest -q -rP tests/test_engine_jack.py``. KNOBNET_JACK_SECONDS shortens the run
while developing (the figures quoted for the issue come from the 60 s default).

The app runs in a subprocess so that PortAudio initialises after our jackd is up; jackd is
started here and stopped by its PID.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

SECONDS = float(os.environ.get("KNOBNET_JACK_SECONDS", "60"))
WARMUP_S = 3.0  # startup (model loading, JIT cache loads, first paints) is reported apart
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def jackd():
    exe = shutil.which("jackd")
    if exe is None:
        pytest.skip("jackd is not installed (apt-get install jackd2): no real-time engine test")
    name = "knobnet-test"  # our own named server, apart from any default one (one name: JACK has 8 slots)
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
    proc = subprocess.Popen([exe, "-n", name, "-R", "-P", "70", "-d", "dummy", "-r", "48000", "-p", "128"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lsp = shutil.which("jack_lsp")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = proc.stdout.read()
            if "already active" in log:
                pytest.skip(f"a JACK server named {name} is already running (another test run?)")
            pytest.fail(f"jackd exited at start: {log[-1000:]}")
        if lsp and "system:playback" in subprocess.run([lsp, "-s", name], capture_output=True, text=True).stdout:
            break
        time.sleep(0.2)
    else:
        if not lsp:
            time.sleep(2.0)
    yield name
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_default_board_runs_on_jack_in_real_time_with_the_gui_open(jackd, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", KNOBNET_CONFIG_DIR=str(tmp_path), JACK_DEFAULT_SERVER=jackd)
    proc = subprocess.run([sys.executable, __file__, str(SECONDS)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=SECONDS + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("JACK_RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(lines[-1][len("JACK_RESULT "):])
    print(json.dumps(r, indent=2))
    # Speed is reported, not asserted (the machine is shared); what must hold is that the real
    # app ran on JACK, the callback ran the board and the GUI drew while knobs and order changed.
    assert "JACK" in r["status"] and "system" in r["status"]
    assert r["steady"]["callbacks"] > 0 and r["frames_drawn"] > 0
    assert r["knob_moves"] > 0 and r["reorders"] > 0
    assert r["output_peak_seen"] > 0.01  # the demo clip came out of the board


def _run_app(seconds: float) -> dict:
    """Open the app on the default JACK device, play the demo clip, and measure."""
    import numpy as np
    import sounddevice as sd
    from PySide6 import QtCore, QtWidgets

    from app.board import Board
    from app.engine import CALLBACK_HISTORY, AudioSettings
    from app.ui import theme
    from app.ui.main_window import MainWindow
    from effects.synth import DEMO_PATH

    baseline = _empty_callback_xruns(sd, 5.0)
    app = QtWidgets.QApplication(sys.argv[:1])
    theme.apply(app)
    board, messages = Board.default(48000)
    settings = AudioSettings(sample_rate=48000, block_size=128, source="file")
    window = MainWindow(board, settings, use_device=True, messages=messages, demo_path=DEMO_PATH)
    window.resize(1280, 800)
    window.show()
    jvm = next((s for s in board.slots if hasattr(s.pedal, "stages")), board.slots[0])
    window.show_inspector(jvm)
    from app.gui import quiet_gc
    quiet_gc()
    engine = window.engine
    counts = {"knob_moves": 0, "reorders": 0}
    mark, result = {}, {}

    def move_knob():  # sweep the last card's first knob, as a player would
        knob = next(iter(window.cards[-1].knobs.values()))
        lo, hi = knob.knob.minimum, knob.knob.maximum
        knob.setValue(lo + (hi - lo) * (0.5 + 0.4 * np.sin(counts["knob_moves"] / 5)), emit=True)
        counts["knob_moves"] += 1

    def reorder():
        if len(window.board.slots) > 1:
            window.move_slot(0, len(window.board.slots) - 1)
            counts["reorders"] += 1

    def warmed():  # steady state: WARMUP_S after the first callback
        if not engine.callbacks[0]:
            QtCore.QTimer.singleShot(500, warmed)
            return
        if "first" not in mark:
            mark["first"] = time.monotonic()
            QtCore.QTimer.singleShot(int(WARMUP_S * 1000), warmed)
            return
        mark.update(callbacks=int(engine.callbacks[0]), xruns=int(engine.xruns[0]), frames=window.frames)
        QtCore.QTimer.singleShot(int(seconds * 1000), measure)

    def measure():
        stats = engine.callback_stats()
        k = int(engine.callbacks[0])
        n = min(k - mark["callbacks"], CALLBACK_HISTORY)
        steady_ms = engine.callback_s[np.arange(k - n, k) % CALLBACK_HISTORY] * 1e3
        result.update({
            "seconds": seconds, "board": window.board.order(), "status": engine.status,
            "block_ms": stats["block_ms"], "latency_ms": 1e3 * engine.latency_s,
            "total": {"callbacks": stats["callbacks"], "xruns": stats["xruns"]},
            "steady": {"callbacks": k - mark["callbacks"], "xruns": stats["xruns"] - mark["xruns"],
                       "p50_ms": float(np.percentile(steady_ms, 50)), "p99_ms": float(np.percentile(steady_ms, 99)),
                       "max_ms": float(steady_ms.max())},
            "frames_drawn": window.frames, "fps": (window.frames - mark["frames"]) / seconds,
            "output_peak_seen": float(np.abs(engine.scope_out.buf).max()),
            "load_average": os.getloadavg()[0], "empty_callback_baseline": baseline, **counts})
        window.close()  # stops the stream
        app.quit()

    timers = [QtCore.QTimer(interval=200, timeout=move_knob), QtCore.QTimer(interval=5000, timeout=reorder)]
    for t in timers:
        t.start()
    QtCore.QTimer.singleShot(int(WARMUP_S * 1000), warmed)
    app.exec()
    return result


def _empty_callback_xruns(sd, seconds: float) -> dict:
    """What the machine gives any Python client: xruns of a callback that only writes zeros."""
    counts = {"callbacks": 0, "xruns": 0}

    def callback(outdata, frames, time_info, status):
        counts["callbacks"] += 1
        if status.output_underflow or status.input_overflow:
            counts["xruns"] += 1
        outdata.fill(0)
    with sd.OutputStream(samplerate=48000, blocksize=128, channels=2, dtype="float32", latency="low",
                         callback=callback):
        time.sleep(seconds)
    return dict(counts, seconds=seconds)


if __name__ == "__main__":
    print("JACK_RESULT " + json.dumps(_run_app(float(sys.argv[1]))), flush=True)
    os._exit(0)  # skip interpreter teardown: PySide/pyqtgraph object cycles can crash it
