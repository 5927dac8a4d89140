"""Model inspectors: what each pedal shows when probed, redrawn as its knobs move. GUI thread.

* JVM: every DDSP stage from ``pedal.stages()`` (filter and stage responses, each
  nonlinearity's transfer curve and hysteresis loop, the gains).
* OD-3 (and any pedal without its own inspection API): a sine probe run on a private copy of the
  pedal (``load_pedal(name, model_path=pedal.model_path)``), never the pedal the audio thread
  runs: the transfer curve (output against input over one period) and the harmonic spectrum.
* LA-2A: ``static_curve(levels_db)`` and the history of ``gain_reduction_db``, when the pedal offers them.
"""
from __future__ import annotations

import collections
import dataclasses
import threading

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.ui import theme

FREQ_TICKS = [(np.log10(f), label) for f, label in ((20, "20"), (50, "50"), (100, "100"), (200, "200"),
                                                    (500, "500"), (1000, "1k"), (2000, "2k"), (5000, "5k"),
                                                    (10000, "10k"), (20000, "20k"))]
CURVE_COLORS = ("#f0a030", "#4fa3ff", "#46c46a", "#d070e0", "#ff6b6b", "#40d0d0", "#c0c040", "#a0a0ff")


@dataclasses.dataclass
class SineProbe:
    """A pedal's response to a steady sine."""
    freq_hz: float  # the probe frequency (snapped to an FFT bin)
    amplitude: float
    period_in: np.ndarray  # (P,) one period of the input, the last one
    period_out: np.ndarray  # (P,) the output over the same period
    harmonics_db: np.ndarray  # (H,) dBFS of harmonics 1..H


def sine_probe(pedal, freq_hz: float = 220.0, amplitude: float = 0.5, n_fft: int = 8192,
               settle_s: float = 0.1, n_harmonics: int = 10) -> SineProbe:
    """Run a sine through ``pedal`` from a reset state (the caller passes a private copy).

    Args:
        freq_hz: wanted frequency; snapped to bin k = round(f n_fft / fs) so the FFT sees whole periods.
        amplitude: peak of the sine, full scale = 1.
        n_fft: FFT length (Hann window) over the steady part.
    Returns:
        SineProbe; a full-scale sine at a harmonic reads 0 dBFS.
    """
    fs = pedal.sample_rate
    k = max(1, int(round(freq_hz * n_fft / fs)))
    f = k * fs / n_fft
    n_settle = int(settle_s * fs)
    t = np.arange(n_settle + n_fft) / fs
    x = (amplitude * np.sin(2 * np.pi * f * t)).astype(np.float32)
    pedal.reset()
    y = pedal.process(x)
    steady = y[n_settle:].astype(np.float64)
    window = np.hanning(n_fft)
    spec = np.abs(np.fft.rfft(steady * window)) * (2.0 / window.sum())
    bins = [k * h for h in range(1, n_harmonics + 1) if k * h < spec.size]
    period = int(round(fs / f))
    return SineProbe(f, amplitude, x[-period:], y[-period:],
                     20 * np.log10(np.maximum(spec[bins], 1e-9)))


def _plot(title: str, x_label: str, y_label: str, legend: bool = True) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setAntialiasing(True)  # redrawn only when a knob moves, unlike the scopes
    w.setMenuEnabled(False)
    w.hideButtons()
    w.showGrid(x=True, y=True, alpha=0.15)
    w.setTitle(f"<span style='color:{theme.MUTED}'>{title}</span>", size="9pt")
    w.setLabel("bottom", x_label)
    w.setLabel("left", y_label)
    if legend:
        w.addLegend(offset=(-6, 6), labelTextColor=theme.MUTED, brush=pg.mkBrush(34, 37, 43, 170))
    w.setMinimumHeight(170)
    return w


def _spin(value, lo, hi, step, suffix, decimals=2):
    s = QtWidgets.QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setDecimals(decimals)
    s.setValue(value)
    s.setSuffix(suffix)
    return s


class Inspector(QtWidgets.QWidget):
    """Base: a pedal's inspector. ``refresh()`` recomputes from the pedal's knob targets;
    ``tick()`` runs at the GUI frame rate for live readouts."""

    def __init__(self, slot, parent=None):
        super().__init__(parent)
        self.slot = slot
        # The live gain-reduction reading (dB) where the pedal meters one; the window points it at
        # the engine process, which runs its own copy of the pedal.
        self.meter = lambda: getattr(slot.pedal, "gain_reduction_db", None)
        self.layout_ = QtWidgets.QVBoxLayout(self)
        self.layout_.setContentsMargins(6, 6, 6, 6)
        title = QtWidgets.QLabel(f"{slot.pedal.name.upper()} — {slot.pedal.description}")
        title.setWordWrap(True)
        title.setObjectName("SectionTitle")
        self.layout_.addWidget(title)
        self.refreshes = 0

    def refresh(self) -> None:
        self.refreshes += 1

    def tick(self) -> None:
        pass


class ProbeInspector(Inspector):
    """Transfer curve and harmonic spectrum of a sine, on a private copy of the pedal."""

    def __init__(self, slot, parent=None):
        super().__init__(slot, parent)
        from effects import load_pedal
        self.probe_pedal = load_pedal(slot.pedal.name, model_path=slot.pedal.model_path)
        controls = QtWidgets.QHBoxLayout()
        self.amplitude = _spin(0.5, 0.01, 1.0, 0.05, " peak")
        self.freq = _spin(220.0, 40.0, 4000.0, 10.0, " Hz", 0)
        for label, w in (("sine", self.amplitude), ("at", self.freq)):
            controls.addWidget(QtWidgets.QLabel(label))
            controls.addWidget(w)
            w.valueChanged.connect(self.refresh)
        controls.addStretch(1)
        self.layout_.addLayout(controls)
        self.transfer = _plot("transfer curve (one period)", "input", "output", legend=False)
        self.transfer_curve = self.transfer.plot(pen=pg.mkPen(theme.ACCENT, width=2))
        self.transfer.plot([-1, 1], [-1, 1], pen=pg.mkPen(theme.BORDER, style=QtCore.Qt.DashLine))
        self.harmonics = _plot("harmonic spectrum", "harmonic", "dBFS", legend=False)
        self.bars = pg.BarGraphItem(x=np.arange(1, 11), height=np.zeros(10), width=0.6, y0=-120,
                                    brush=theme.ACCENT)
        self.harmonics.addItem(self.bars)
        self.harmonics.setYRange(-120, 6)
        self.layout_.addWidget(self.transfer, 1)
        self.layout_.addWidget(self.harmonics, 1)
        self.probe: SineProbe | None = None
        self.refresh()

    def refresh(self) -> None:
        super().refresh()
        self.probe_pedal.set_knobs(**self.slot.pedal.knob_values())
        self.probe = p = sine_probe(self.probe_pedal, self.freq.value(), self.amplitude.value())
        self.transfer_curve.setData(p.period_in, p.period_out)
        h = np.arange(1, p.harmonics_db.size + 1)
        self.bars.setOpts(x=h, height=p.harmonics_db + 120, y0=-120)
        self.harmonics.setTitle(f"<span style='color:{theme.MUTED}'>harmonic spectrum of {p.freq_hz:.1f} Hz</span>",
                                size="9pt")


class JVMInspector(Inspector):
    """Every DDSP stage of the amp, from its inspection API."""

    def __init__(self, slot, parent=None):
        super().__init__(slot, parent)
        self.stage_box = QtWidgets.QComboBox()
        self.stage_box.setToolTip("the amp's DDSP stage to show")
        self.layout_.addWidget(self.stage_box)
        controls = QtWidgets.QHBoxLayout()
        self.amplitude = _spin(1.0, 0.05, 10.0, 0.1, " peak")
        self.amplitude.setToolTip("peak of the transfer-curve sweep; the loop's sine is half of it")
        self.loop_hz = _spin(100.0, 10.0, 2000.0, 10.0, " Hz", 0)
        self.loop_hz.setToolTip("frequency of the sine that draws the hysteresis loop")
        for label, w in (("sweep", self.amplitude), ("loop at", self.loop_hz)):
            controls.addWidget(QtWidgets.QLabel(label))
            controls.addWidget(w)
            w.valueChanged.connect(self.refresh)
        controls.addStretch(1)
        self.stage_box.currentIndexChanged.connect(self._draw)
        self.layout_.addLayout(controls)
        self.response = _plot("frequency response", "Hz", "dB")
        self.response.setLogMode(x=True, y=False)
        self.response.getAxis("bottom").setTicks([FREQ_TICKS])
        self.transfer = _plot("transfer (solid), hysteresis loop (dashed)", "stage input", "stage output")
        self.gains = QtWidgets.QLabel()
        self.gains.setObjectName("CardSub")
        self.gains.setWordWrap(True)
        self.layout_.addWidget(self.response, 1)
        self.layout_.addWidget(self.transfer, 1)
        self.layout_.addWidget(self.gains)
        self.stages = []
        self.refresh()

    def refresh(self) -> None:
        super().refresh()
        self.stages = self.slot.pedal.stages(amplitude=self.amplitude.value(), loop_amplitude=self.amplitude.value() / 2,
                                             loop_hz=self.loop_hz.value())
        if self.stage_box.count() != len(self.stages):
            self.stage_box.blockSignals(True)
            self.stage_box.clear()
            self.stage_box.addItems([s.name for s in self.stages])
            self.stage_box.blockSignals(False)
        self._draw()

    def _draw(self) -> None:
        i = max(0, self.stage_box.currentIndex())
        if not self.stages:
            return
        s = self.stages[i]
        self.response.clear()
        self.response.plot(s.freqs_hz, s.magnitude_db, pen=pg.mkPen(theme.TEXT, width=2.5), name="stage (small signal)")
        for k, f in enumerate(s.filters):
            self.response.plot(s.freqs_hz, f.magnitude_db, pen=pg.mkPen(CURVE_COLORS[k % len(CURVE_COLORS)], width=1),
                               name=f"{f.name} {f.f_hz:.0f} Hz" if len(s.filters) <= 6 else None)
        if s.reference_db is not None:
            self.response.plot(s.freqs_hz, s.reference_db, pen=pg.mkPen(theme.MUTED, width=1.5, style=QtCore.Qt.DashLine),
                               name=s.reference_name)
        self.transfer.clear()
        for k, nl in enumerate(s.nonlinearities):
            color = CURVE_COLORS[k % len(CURVE_COLORS)]
            self.transfer.plot(nl.transfer_in, nl.transfer_out, pen=pg.mkPen(color, width=2), name=nl.name)
            self.transfer.plot(nl.loop_in, nl.loop_out, pen=pg.mkPen(color, width=1.2, style=QtCore.Qt.DashLine))
        if not s.nonlinearities:
            self.transfer.setTitle(f"<span style='color:{theme.MUTED}'>{s.name}: linear stage, no nonlinearity</span>",
                                   size="9pt")
        else:
            self.transfer.setTitle(f"<span style='color:{theme.MUTED}'>transfer (solid), hysteresis loop "
                                   "(dashed)</span>", size="9pt")
        self.gains.setText("gains: " + ("  ".join(f"{k} {v:+.1f} dB" for k, v in s.gains_db.items()) or "none"))


class LA2AInspector(Inspector):
    """Static compression curve and gain-reduction history, as far as the pedal offers them.

    ``static_curve`` takes a few tenths of a second per level, so it runs on a worker thread
    (it uses private buffers) and the curve is drawn when it arrives.
    """

    HISTORY = 300  # frames at ~30 fps: 10 s
    LEVELS_DB = np.arange(-48.0, 0.1, 6.0)  # 9 input levels
    curveReady = QtCore.Signal(object, object)

    def __init__(self, slot, parent=None):
        super().__init__(slot, parent)
        pedal = slot.pedal
        self.curve_plot = _plot("static compression curve (1 kHz tone)", "input dB", "output dB", legend=False)
        self.curve = self.curve_plot.plot(pen=pg.mkPen(theme.ACCENT, width=2), symbol="o", symbolSize=5,
                                          symbolBrush=theme.ACCENT)
        self.curve_plot.plot([-48, 0], [-48, 0], pen=pg.mkPen(theme.BORDER, style=QtCore.Qt.DashLine))
        self.history_plot = _plot("gain reduction history", "seconds ago", "GR dB", legend=False)
        self.history_curve = self.history_plot.plot(pen=pg.mkPen(theme.ACCENT, width=1.5))
        self.history_plot.setYRange(0, 20)
        self.history = collections.deque([0.0] * self.HISTORY, maxlen=self.HISTORY)
        self.layout_.addWidget(self.curve_plot, 1)
        self.layout_.addWidget(self.history_plot, 1)
        if not hasattr(pedal, "static_curve"):
            self.curve_plot.setTitle(f"<span style='color:{theme.MUTED}'>this LA-2A model offers no static curve</span>")
        self._worker: threading.Thread | None = None
        self._pending = False
        self.curves_drawn = 0
        self.curveReady.connect(self._draw_curve)
        self.refresh()

    def refresh(self) -> None:
        super().refresh()
        static_curve = getattr(self.slot.pedal, "static_curve", None)
        if static_curve is None:
            return
        if self._worker is not None and self._worker.is_alive():
            self._pending = True
            return
        self._pending = False

        def work():
            self.curveReady.emit(self.LEVELS_DB, np.asarray(static_curve(self.LEVELS_DB), np.float64))
        self._worker = threading.Thread(target=work, name="knobnet-la2a-curve", daemon=True)
        self._worker.start()

    def _draw_curve(self, levels_db, out_db) -> None:
        self.curve.setData(levels_db, out_db)
        self.curves_drawn += 1
        if self._pending:
            self.refresh()

    def tick(self) -> None:
        gr = self.meter()
        if gr is not None:
            self.history.append(max(0.0, -float(gr)))
            t = (np.arange(self.HISTORY) - self.HISTORY + 1) / 30.0
            self.history_curve.setData(t, np.fromiter(self.history, float, len(self.history)))


def make_inspector(slot, meter=None) -> Inspector:
    """The inspector that suits the pedal: its own API where it has one, else a sine probe.

    ``meter()`` returns the running pedal's gain reduction in dB (or None), where it is not
    ``slot.pedal`` that runs.
    """
    pedal = slot.pedal
    if hasattr(pedal, "stages"):
        inspector = JVMInspector(slot)
    elif hasattr(pedal, "static_curve") or hasattr(pedal, "gain_reduction_db"):
        inspector = LA2AInspector(slot)
    else:
        inspector = ProbeInspector(slot)
    if meter is not None:
        inspector.meter = meter
    return inspector
