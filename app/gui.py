"""``run_gui``: open the pedalboard window (or save a screenshot of it and exit). Main (GUI) thread."""
from __future__ import annotations

import os
import sys

DEFAULT_SIZE = (1280, 800)
SCREENSHOT_DELAY_MS = 2500


def window_size() -> tuple[int, int]:
    """KNOBNET_WINDOW_SIZE="WxH" overrides the default window size (for screenshots at other sizes)."""
    text = os.environ.get("KNOBNET_WINDOW_SIZE", "")
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        return DEFAULT_SIZE


def quiet_gc() -> None:
    """Keep the cyclic garbage collector from pausing the GUI thread while it holds the GIL the
    audio callback needs: move everything alive after start-up out of its reach, and collect
    the youngest generation less often."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 100)


def run_gui(screenshot: str | None = None) -> int:
    """Open the main window with the default board (od3 -> la2a -> jvm, what loads).

    With ``screenshot``, no audio device is opened: the demo clip runs to the scopes, the first
    inspectable pedal's inspector opens, and after a moment the window is saved as a PNG at
    ``screenshot``; returns 0 then (1 if the PNG could not be written).
    """
    from PySide6 import QtCore, QtWidgets

    from app.board import Board
    from app.engine import AudioSettings
    from app.engine_process import AudioProcess
    from app.ui import theme
    from app.ui.main_window import MainWindow
    from effects.synth import DEMO_PATH, write_demo

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("knobnet")
    theme.apply(app)
    settings = AudioSettings.load()
    if screenshot is not None:
        settings.source = "file"
    engine = AudioProcess(settings.sample_rate)  # starts up while this process loads the board
    board, messages = Board.default(settings.sample_rate)
    if not DEMO_PATH.is_file():
        write_demo(DEMO_PATH)
    window = MainWindow(board, settings, use_device=screenshot is None, messages=messages, demo_path=DEMO_PATH,
                        engine=engine)
    window.resize(*window_size())
    window.show()
    quiet_gc()
    if screenshot is None:
        return app.exec()

    inspect = next((s for s in board.slots if hasattr(s.pedal, "stages")), board.slots[0] if board.slots else None)
    if inspect is not None:
        window.show_inspector(inspect)
    result = {"rc": 1}

    def shoot():
        if window.grab().save(str(screenshot), "PNG"):
            result["rc"] = 0
        else:
            print(f"knobnet: error: cannot write the screenshot to {screenshot}", file=sys.stderr)
        window.close()
        app.quit()
    QtCore.QTimer.singleShot(SCREENSHOT_DELAY_MS, shoot)
    app.exec()
    return result["rc"]
