"""Scopes and meters fed from the engine's rings by the main window's ~30 fps timer. GUI thread.

The plots are fed data; the only computing here is the trigger search and the spectrum's FFT,
done on the GUI thread from copies of the rings, never in the audio callback.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme

METER_FLOOR_DB = -60.0
METER_TOP_DB = 6.0


def db(x, floor: float = -120.0):
    return np.maximum(20.0 * np.log10(np.maximum(np.abs(x), 1e-12)), floor)


class LevelMeter(QtWidgets.QWidget):
    """A vertical peak meter (dBFS) with peak hold and a clip LED; click to clear the clip LED."""

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        self.label = label
        self.level_db = METER_FLOOR_DB
        self.hold_db = METER_FLOOR_DB
        self._hold_ticks = 0
        self.clipped = False
        self.setMinimumSize(34, 120)
        self.setToolTip(f"{label} peak level, dBFS; the top LED lights on clipping (click to clear)")

    def set_peak(self, peak: float, clipped: bool) -> None:
        level = float(db(peak, METER_FLOOR_DB))
        # Fall back at about 20 dB/s at 30 fps.
        self.level_db = level if level > self.level_db else max(level, self.level_db - 0.7)
        if level >= self.hold_db or self._hold_ticks <= 0:
            self.hold_db, self._hold_ticks = level, 45
        self._hold_ticks -= 1
        self.clipped = self.clipped or clipped
        self.update()

    def mousePressEvent(self, e):
        self.clipped = False
        self.update()

    def _y(self, level_db, top, height):
        frac = (level_db - METER_FLOOR_DB) / (METER_TOP_DB - METER_FLOOR_DB)
        return top + height * (1 - min(1.0, max(0.0, frac)))

    def paintEvent(self, e):
        p = QtGui.QPainter(self)
        w, h = self.width(), self.height()
        top, bottom = 16, 16
        bar_h = h - top - bottom
        p.fillRect(0, 0, w, h, QtGui.QColor(theme.PANEL))
        p.setBrush(QtGui.QColor(theme.LED_ON if self.clipped else theme.LED_OFF))
        p.setPen(QtCore.Qt.NoPen)
        p.drawRoundedRect(QtCore.QRectF(w / 2 - 9, 2, 18, 10), 3, 3)
        bar = QtCore.QRectF(w / 2 - 7, top, 14, bar_h)
        p.fillRect(bar, QtGui.QColor(theme.BACKGROUND))
        grad = QtGui.QLinearGradient(0, top + bar_h, 0, top)
        grad.setColorAt(0.0, QtGui.QColor(theme.GOOD))
        grad.setColorAt(0.75, QtGui.QColor(theme.WARN))
        grad.setColorAt(1.0, QtGui.QColor(theme.BAD))
        y = self._y(self.level_db, top, bar_h)
        p.fillRect(QtCore.QRectF(bar.left(), y, bar.width(), top + bar_h - y), grad)
        p.setPen(QtGui.QPen(QtGui.QColor(theme.TEXT), 1))
        yh = self._y(self.hold_db, top, bar_h)
        p.drawLine(QtCore.QPointF(bar.left(), yh), QtCore.QPointF(bar.right(), yh))
        p.setPen(QtGui.QColor(theme.MUTED))
        f = p.font()
        f.setPointSizeF(8)
        p.setFont(f)
        p.drawText(QtCore.QRectF(0, h - 14, w, 14), QtCore.Qt.AlignCenter, self.label)
        p.end()


def _plot(title: str) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setMenuEnabled(False)
    w.setMouseEnabled(False, False)
    w.hideButtons()
    w.showGrid(x=True, y=True, alpha=0.15)
    w.setTitle(f"<span style='color:{theme.MUTED}'>{title}</span>", size="9pt")
    w.addLegend(offset=(-8, 4), labelTextColor=theme.MUTED, brush=pg.mkBrush(34, 37, 43, 170))
    return w


class Oscilloscope(QtWidgets.QWidget):
    """Input and output overlaid, triggered on a rising zero crossing of the output."""

    def __init__(self, sample_rate: int, window_ms: float = 25.0, parent=None):
        super().__init__(parent)
        self.sample_rate = sample_rate
        self.window_ms = window_ms
        self.plot = _plot("oscilloscope")
        self.plot.setLabel("bottom", "time", units="ms")
        self.plot.setYRange(-1, 1)
        self.plot.setXRange(0, window_ms, padding=0)
        self.curve_in = self.plot.plot(pen=pg.mkPen(theme.INPUT_COLOR, width=1), name="input", skipFiniteCheck=True)
        self.curve_out = self.plot.plot(pen=pg.mkPen(theme.OUTPUT_COLOR, width=1), name="output", skipFiniteCheck=True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)

    @staticmethod
    def trigger(x: np.ndarray, n: int) -> int:
        """Start of the last rising zero crossing that leaves n samples after it (else the last n)."""
        search = x[:x.size - n]
        rising = np.flatnonzero((search[:-1] <= 0) & (search[1:] > 0))
        return int(rising[-1] + 1) if rising.size else x.size - n

    def update_from(self, x_in: np.ndarray, x_out: np.ndarray) -> None:
        n = int(self.window_ms * 1e-3 * self.sample_rate)
        if x_out.size < 2 * n:
            return
        i = self.trigger(x_out, n)
        t = np.arange(n) * (1e3 / self.sample_rate)
        self.curve_in.setData(t, x_in[i:i + n])
        self.curve_out.setData(t, x_out[i:i + n])


class Spectrum(QtWidgets.QWidget):
    """Input and output spectra (dBFS, Hann window, log frequency), smoothed over frames."""

    def __init__(self, sample_rate: int, n_fft: int = 4096, parent=None):
        super().__init__(parent)
        self.n_fft = n_fft
        self.window = np.hanning(n_fft).astype(np.float32)
        self.set_sample_rate(sample_rate)
        self.plot = _plot("spectrum")
        self.plot.setLogMode(x=True, y=False)
        self.plot.setLabel("bottom", "frequency (Hz)")
        from app.ui.inspectors import FREQ_TICKS
        self.plot.getAxis("bottom").setTicks([FREQ_TICKS])
        self.plot.setYRange(-110, 0)
        self.plot.setXRange(np.log10(20), np.log10(min(20000, sample_rate / 2)), padding=0)
        self.curve_in = self.plot.plot(pen=pg.mkPen(theme.INPUT_COLOR, width=1), name="input", skipFiniteCheck=True)
        self.curve_out = self.plot.plot(pen=pg.mkPen(theme.OUTPUT_COLOR, width=1), name="output", skipFiniteCheck=True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)

    def set_sample_rate(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        freqs_hz = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)[1:]
        # Draw at most ~300 log-spaced points: each is the loudest bin of its band.
        self._bands = np.unique(np.round(np.geomspace(1, freqs_hz.size, 300)).astype(int) - 1)
        self.freqs_hz = freqs_hz[self._bands]
        self._smooth = [None, None]

    def spectrum_db(self, x: np.ndarray) -> np.ndarray:
        """dBFS of a full-scale sine at its bin = 0 dB: scale by 2 / sum(window)."""
        spec = np.abs(np.fft.rfft(x[-self.n_fft:] * self.window))[1:] * (2.0 / self.window.sum())
        return db(np.maximum.reduceat(spec, self._bands), -140.0)

    def update_from(self, x_in: np.ndarray, x_out: np.ndarray) -> None:
        if x_out.size < self.n_fft:
            return
        for k, (x, curve) in enumerate(((x_in, self.curve_in), (x_out, self.curve_out))):
            s = self.spectrum_db(x)
            prev = self._smooth[k]
            self._smooth[k] = s if prev is None else np.maximum(s, 0.7 * prev + 0.3 * s)
            curve.setData(self.freqs_hz, self._smooth[k])


class GainReductionMeter(QtWidgets.QWidget):
    """The LA-2A's gain reduction (dB) as a horizontal bar, or a note when there is none."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.gr_db = None
        self.setMinimumHeight(34)
        self.setToolTip("LA-2A gain reduction")

    def set_gr(self, gr_db: float | None) -> None:
        self.gr_db = gr_db
        self.update()

    def paintEvent(self, e):
        p = QtGui.QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QtGui.QColor(theme.PANEL))
        p.setPen(QtGui.QColor(theme.MUTED))
        f = p.font()
        f.setPointSizeF(8)
        p.setFont(f)
        if self.gr_db is None:
            p.drawText(QtCore.QRectF(0, 0, w, h), QtCore.Qt.AlignCenter, "gain reduction: no LA-2A on the board")
            p.end()
            return
        p.drawText(QtCore.QRectF(6, 0, 110, h), QtCore.Qt.AlignVCenter, f"GR {self.gr_db:5.1f} dB")
        bar = QtCore.QRectF(110, h / 2 - 6, w - 120, 12)
        p.fillRect(bar, QtGui.QColor(theme.BACKGROUND))
        frac = min(1.0, max(0.0, self.gr_db / 20.0))  # full bar = 20 dB
        p.fillRect(QtCore.QRectF(bar.left(), bar.top(), bar.width() * frac, bar.height()), QtGui.QColor(theme.ACCENT))
        p.end()
