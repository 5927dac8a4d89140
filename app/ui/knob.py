"""A rotary knob for one ``effects.Knob``: drag, wheel, double-click to default, arrow keys. GUI thread."""
from __future__ import annotations

import math

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme

SWEEP_DEG = 270.0  # from 7:30 to 4:30 o'clock
DRAG_PIXELS_PER_RANGE = 200.0


class RotaryKnob(QtWidgets.QWidget):
    """A rotary control showing its name and its value in the knob's unit.

    Signals:
        valueChanging(float): while dragging or stepping (every change).
        valueChanged(float): when a change is complete (release, wheel step, key, double-click).
    """
    valueChanging = QtCore.Signal(float)
    valueChanged = QtCore.Signal(float)

    def __init__(self, knob, value: float | None = None, parent=None, color: str = theme.ACCENT):
        super().__init__(parent)
        self.knob = knob
        self.color = QtGui.QColor(color)
        self._value = float(knob.default if value is None else value)
        self._drag_origin = None
        self.setFocusPolicy(QtCore.Qt.StrongFocus)
        self.setFixedSize(72, 94)
        self.setToolTip(f"{knob.name}: drag or scroll to turn, double-click for the default "
                        f"({knob.describe(knob.default)}), arrow keys to step")
        self.setAccessibleName(knob.name)

    # ---- value ----
    def value(self) -> float:
        return self._value

    @property
    def step(self) -> float:
        return 1.0 if self.knob.choices else (self.knob.maximum - self.knob.minimum) / 100.0

    def setValue(self, value: float, emit: bool = False, final: bool = True) -> None:
        """Set the value (clamped, switches rounded); emits only when asked and changed."""
        k = self.knob
        v = min(k.maximum, max(k.minimum, float(value)))
        if k.choices:
            v = float(round(v))
        else:
            v = round(v / self.step) * self.step if self._drag_origin is None else v
            v = min(k.maximum, max(k.minimum, v))
        if v == self._value:
            if emit and final:
                self.valueChanged.emit(v)
            return
        self._value = v
        self.update()
        if emit:
            self.valueChanging.emit(v)
            if final:
                self.valueChanged.emit(v)

    def text(self) -> str:
        if self.knob.choices:
            return self.knob.describe(self._value)
        unit = f" {self.knob.unit}" if self.knob.unit else ""
        return f"{self._value:.1f}{unit}"

    # ---- input ----
    def mousePressEvent(self, e):
        if e.button() == QtCore.Qt.LeftButton:
            self._drag_origin = (e.position().y(), self._value)
            self.setFocus()

    def mouseMoveEvent(self, e):
        if self._drag_origin is None:
            return
        y0, v0 = self._drag_origin
        span = self.knob.maximum - self.knob.minimum
        fine = 0.1 if e.modifiers() & QtCore.Qt.ShiftModifier else 1.0
        self.setValue(v0 + (y0 - e.position().y()) / DRAG_PIXELS_PER_RANGE * span * fine, emit=True, final=False)

    def mouseReleaseEvent(self, e):
        if self._drag_origin is not None:
            self._drag_origin = None
            self.setValue(self._value, emit=True)

    def mouseDoubleClickEvent(self, e):
        self.setValue(self.knob.default, emit=True)

    def wheelEvent(self, e):
        steps = e.angleDelta().y() / 120.0
        if steps:
            self.setValue(self._value + steps * self.step, emit=True)
        e.accept()

    def keyPressEvent(self, e):
        big = 10.0 if not self.knob.choices else 1.0
        moves = {QtCore.Qt.Key_Up: 1, QtCore.Qt.Key_Right: 1, QtCore.Qt.Key_Down: -1, QtCore.Qt.Key_Left: -1,
                 QtCore.Qt.Key_PageUp: big, QtCore.Qt.Key_PageDown: -big}
        if e.key() in moves and not e.modifiers() & QtCore.Qt.ControlModifier:
            self.setValue(self._value + moves[e.key()] * self.step, emit=True)
        elif e.key() == QtCore.Qt.Key_Home:
            self.setValue(self.knob.minimum, emit=True)
        elif e.key() == QtCore.Qt.Key_End:
            self.setValue(self.knob.maximum, emit=True)
        else:
            super().keyPressEvent(e)

    # ---- drawing ----
    def paintEvent(self, e):
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        w = self.width()
        d = 50
        rect = QtCore.QRectF((w - d) / 2, 16, d, d)
        k = self.knob
        frac = (self._value - k.minimum) / max(k.maximum - k.minimum, 1e-12)
        # name
        p.setPen(QtGui.QColor(theme.MUTED))
        f = p.font()
        f.setPointSizeF(8.5)
        p.setFont(f)
        label = k.name.replace("_", " ")
        while QtGui.QFontMetricsF(f).horizontalAdvance(label) > w - 2 and f.pointSizeF() > 6.5:
            f.setPointSizeF(f.pointSizeF() - 0.5)
        p.setFont(f)
        p.drawText(QtCore.QRectF(0, 0, w, 14), QtCore.Qt.AlignCenter,
                   QtGui.QFontMetricsF(f).elidedText(label, QtCore.Qt.ElideRight, w - 2))
        # track and value arc (Qt angles: 1/16 deg, counter-clockwise from 3 o'clock)
        pen = QtGui.QPen(QtGui.QColor(theme.BORDER), 4)
        pen.setCapStyle(QtCore.Qt.RoundCap)
        p.setPen(pen)
        start = 225.0
        p.drawArc(rect, int(start * 16), int(-SWEEP_DEG * 16))
        pen.setColor(self.color)
        p.setPen(pen)
        p.drawArc(rect, int(start * 16), int(-SWEEP_DEG * frac * 16))
        # body
        body = rect.adjusted(7, 7, -7, -7)
        grad = QtGui.QRadialGradient(body.center() - QtCore.QPointF(4, 4), body.width() * 0.7)
        grad.setColorAt(0, QtGui.QColor("#50555e"))
        grad.setColorAt(1, QtGui.QColor("#1e2024"))
        p.setPen(QtGui.QPen(QtGui.QColor("#111"), 1))
        p.setBrush(grad)
        p.drawEllipse(body)
        # pointer
        ang = math.radians(start - SWEEP_DEG * frac)
        c = body.center()
        r = body.width() / 2
        pointer = QtGui.QPen(QtGui.QColor(theme.TEXT), 2.5)
        pointer.setCapStyle(QtCore.Qt.RoundCap)
        p.setPen(pointer)
        p.drawLine(c + QtCore.QPointF(math.cos(ang) * r * 0.25, -math.sin(ang) * r * 0.25),
                   c + QtCore.QPointF(math.cos(ang) * r * 0.85, -math.sin(ang) * r * 0.85))
        # value readout
        p.setPen(QtGui.QColor(theme.ACCENT if self.hasFocus() else theme.TEXT))
        f.setPointSizeF(9)
        p.setFont(f)
        p.drawText(QtCore.QRectF(0, 72, w, 18), QtCore.Qt.AlignCenter, self.text())
        p.end()
