"""A pedal card (knobs, footswitch with LED, inspect/remove, CPU readout) and the board view
that lays the cards out in signal order and reorders them by drag and drop or keyboard. GUI thread."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme
from app.ui.knob import RotaryKnob

MIME_SLOT = "application/x-knobnet-slot"


class Led(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.on = True
        self.setFixedSize(14, 14)

    def set_on(self, on: bool) -> None:
        self.on = on
        self.update()

    def paintEvent(self, e):
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.Antialiasing)
        p.setPen(QtGui.QPen(QtGui.QColor("#111"), 1))
        p.setBrush(QtGui.QColor(theme.LED_ON if self.on else theme.LED_OFF))
        p.drawEllipse(QtCore.QRectF(1, 1, 12, 12))
        p.end()


class PedalCard(QtWidgets.QFrame):
    """One slot of the board.

    Signals:
        knobChanging(str, float), knobChanged(str, float): a knob moved (while dragging / done).
        bypassToggled(bool): the footswitch, True = bypassed.
        inspectRequested(), removeRequested(), moveRequested(int): -1 left, +1 right.
    """
    knobChanging = QtCore.Signal(str, float)
    knobChanged = QtCore.Signal(str, float)
    bypassToggled = QtCore.Signal(bool)
    inspectRequested = QtCore.Signal()
    removeRequested = QtCore.Signal()
    moveRequested = QtCore.Signal(int)

    def __init__(self, slot, index: int, parent=None):
        super().__init__(parent)
        self.slot = slot
        self.index = index
        self.setObjectName("PedalCard")
        self.setFocusPolicy(QtCore.Qt.ClickFocus)
        color = theme.PEDAL_COLORS.get(slot.name, theme.MUTED)
        pedal = slot.pedal
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 10)
        lay.setSpacing(6)

        head = QtWidgets.QHBoxLayout()
        stripe = QtWidgets.QFrame()
        stripe.setFixedSize(6, 30)
        stripe.setStyleSheet(f"background: {color}; border-radius: 3px;")
        head.addWidget(stripe)
        titles = QtWidgets.QVBoxLayout()
        titles.setSpacing(0)
        self.title = QtWidgets.QLabel(pedal.name.upper())
        self.title.setObjectName("CardTitle")
        self.title.setToolTip(pedal.description + "\nDrag the title to reorder; Ctrl+Left/Right moves the card.")
        self.title.setCursor(QtCore.Qt.OpenHandCursor)
        titles.addWidget(self.title)
        sub = QtWidgets.QLabel(f"{pedal.sample_rate / 1000:g} kHz")
        sub.setObjectName("CardSub")
        self.sub = sub
        titles.addWidget(sub)
        head.addLayout(titles, 1)
        for text, tip, signal in (("◀", "move left (Ctrl+Left)", lambda: self.moveRequested.emit(-1)),
                                  ("▶", "move right (Ctrl+Right)", lambda: self.moveRequested.emit(1)),
                                  ("✕", "remove from the board", self.removeRequested.emit)):
            b = QtWidgets.QToolButton(text=text, toolTip=tip)
            b.setFixedSize(26, 24)
            b.setStyleSheet("padding: 0;")
            b.clicked.connect(signal)
            head.addWidget(b)
        lay.addLayout(head)

        grid = QtWidgets.QGridLayout()
        grid.setSpacing(2)
        self.knobs: dict[str, RotaryKnob] = {}
        values = pedal.knob_values()
        per_row = 3 if len(pedal.knobs) <= 6 else 4
        for i, k in enumerate(pedal.knobs):
            w = RotaryKnob(k, values[k.name], color=color)
            w.valueChanging.connect(lambda v, n=k.name: self.knobChanging.emit(n, v))
            w.valueChanged.connect(lambda v, n=k.name: self.knobChanged.emit(n, v))
            self.knobs[k.name] = w
            grid.addWidget(w, i // per_row, i % per_row, QtCore.Qt.AlignCenter)
        lay.addLayout(grid)
        lay.addStretch(1)

        foot = QtWidgets.QHBoxLayout()
        self.led = Led()
        foot.addWidget(self.led)
        self.cpu = QtWidgets.QLabel("CPU –")
        self.cpu.setObjectName("CardSub")
        self.cpu.setToolTip("share of the block's time this pedal takes")
        foot.addWidget(self.cpu, 1)
        self.inspect = QtWidgets.QPushButton("Inspect")
        self.inspect.clicked.connect(self.inspectRequested.emit)
        foot.addWidget(self.inspect)
        lay.addLayout(foot)
        self.footswitch = QtWidgets.QPushButton("ON")
        self.footswitch.setCheckable(True)
        self.footswitch.setToolTip("footswitch: engage / bypass (click-free)")
        self.footswitch.setMinimumHeight(34)
        self.footswitch.toggled.connect(self._footswitch)
        lay.addWidget(self.footswitch)
        self.set_bypassed(slot.bypassed)
        self.setMinimumWidth(per_row * 74 + 22)
        self._press = None

    def set_bypassed(self, bypassed: bool) -> None:
        self.footswitch.blockSignals(True)
        self.footswitch.setChecked(bypassed)
        self.footswitch.blockSignals(False)
        self.footswitch.setText("BYPASSED" if bypassed else "ON")
        self.led.set_on(not bypassed)

    def _footswitch(self, checked: bool) -> None:
        self.set_bypassed(checked)
        self.bypassToggled.emit(checked)

    def set_cpu(self, fraction: float) -> None:
        text = f"CPU {100 * fraction:4.1f}%"
        if self.cpu.text() != text:
            self.cpu.setText(text)

    # ---- dragging the card by its title ----
    def mousePressEvent(self, e):
        if e.button() == QtCore.Qt.LeftButton and self.childAt(e.position().toPoint()) in (self.title, self.sub, None):
            self._press = e.position().toPoint()
        super().mousePressEvent(e)

    def mouseMoveEvent(self, e):
        if self._press is None or (e.position().toPoint() - self._press).manhattanLength() < 8:
            return
        self._press = None
        mime = QtCore.QMimeData()
        mime.setData(MIME_SLOT, str(self.index).encode())
        drag = QtGui.QDrag(self)
        drag.setMimeData(mime)
        drag.setPixmap(self.grab().scaledToWidth(160, QtCore.Qt.SmoothTransformation))
        drag.exec(QtCore.Qt.MoveAction)

    def mouseReleaseEvent(self, e):
        self._press = None
        super().mouseReleaseEvent(e)

    def keyPressEvent(self, e):
        if e.modifiers() & QtCore.Qt.ControlModifier and e.key() in (QtCore.Qt.Key_Left, QtCore.Qt.Key_Right):
            self.moveRequested.emit(-1 if e.key() == QtCore.Qt.Key_Left else 1)
        else:
            super().keyPressEvent(e)


class BoardView(QtWidgets.QScrollArea):
    """The cards in signal order, left to right, with an input and an output jack label.

    Signals:
        moveRequested(int, int): move the slot at src so that it ends up at dst.
    """
    moveRequested = QtCore.Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setAcceptDrops(True)
        self.inner = QtWidgets.QWidget()
        self.row = QtWidgets.QHBoxLayout(self.inner)
        self.row.setContentsMargins(12, 12, 12, 12)
        self.row.setSpacing(10)
        self.setWidget(self.inner)
        self.cards: list[PedalCard] = []
        self._drop_marker = None

    def set_cards(self, cards: list[PedalCard]) -> None:
        while self.row.count():
            item = self.row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cards = cards
        self.row.addWidget(self._jack("IN ▶"))
        for c in cards:
            self.row.addWidget(c)
        if not cards:
            empty = QtWidgets.QLabel("The board is empty: add a pedal from the toolbar.")
            empty.setObjectName("SectionTitle")
            self.row.addWidget(empty)
        self.row.addWidget(self._jack("▶ OUT"))
        self.row.addStretch(1)
        tallest = max((c.sizeHint().height() for c in cards), default=120)
        self.setMinimumHeight(tallest + 2 * 12 + self.horizontalScrollBar().sizeHint().height() + 4)

    @staticmethod
    def _jack(text):
        label = QtWidgets.QLabel(text)
        label.setObjectName("SectionTitle")
        return label

    def drop_index(self, pos: QtCore.QPoint, src: int) -> int:
        """Where the slot at src ends up when dropped at pos (viewport coordinates)."""
        x = self.inner.mapFrom(self.viewport(), pos).x()
        left_of_drop = sum(1 for c in self.cards if c.geometry().center().x() < x)
        return min(len(self.cards) - 1, left_of_drop - 1 if left_of_drop > src else left_of_drop)

    def dragEnterEvent(self, e):
        if e.mimeData().hasFormat(MIME_SLOT):
            e.acceptProposedAction()

    def dragMoveEvent(self, e):
        if e.mimeData().hasFormat(MIME_SLOT):
            e.acceptProposedAction()

    def dropEvent(self, e):
        if not e.mimeData().hasFormat(MIME_SLOT):
            return
        src = int(bytes(e.mimeData().data(MIME_SLOT)).decode())
        dst = self.drop_index(e.position().toPoint(), src)
        e.acceptProposedAction()
        if src != dst:
            self.moveRequested.emit(src, dst)
