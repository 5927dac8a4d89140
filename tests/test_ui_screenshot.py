"""``run_gui(screenshot=...)`` opens the default board with an inspector and saves a PNG."""
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.parametrize("size", ["1280x800"])
def test_screenshot_saves_a_png_of_the_window(tmp_path, size):
    png = tmp_path / "board.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", KNOBNET_WINDOW_SIZE=size,
               KNOBNET_CONFIG_DIR=str(tmp_path))
    code = "import sys; from app.gui import run_gui; sys.exit(run_gui(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(png)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    from PySide6 import QtGui
    image = QtGui.QImage(str(png))
    assert (image.width(), image.height()) == tuple(int(v) for v in size.split("x"))
    # The dark theme: the top-left pixel is the menu bar's background, not white.
    assert QtGui.QColor(image.pixel(2, 2)).lightness() < 60
