"""The audio settings dialog. GUI thread."""
from __future__ import annotations

from PySide6 import QtWidgets

from app.engine import AudioSettings

SAMPLE_RATES = (44100, 48000, 88200, 96000)
BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048)


def list_devices() -> tuple[list[str], list[str]]:
    """Names of input and output devices (empty lists when PortAudio is unavailable)."""
    try:
        import sounddevice as sd
        devices = sd.query_devices()
    except Exception:  # no PortAudio library, or it failed to initialise
        return [], []
    return ([d["name"] for d in devices if d["max_input_channels"] > 0],
            [d["name"] for d in devices if d["max_output_channels"] > 0])


class SettingsDialog(QtWidgets.QDialog):
    """Choose input/output device, sample rate, block size and source; ``settings()`` reads them."""

    def __init__(self, settings: AudioSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Audio settings")
        inputs, outputs = list_devices()
        form = QtWidgets.QFormLayout(self)
        self.source = QtWidgets.QComboBox()
        self.source.addItem("audio interface input", "input")
        self.source.addItem("file player", "file")
        self.source.setCurrentIndex(0 if settings.source == "input" else 1)
        self.input = self._devices(inputs, settings.input_device)
        self.output = self._devices(outputs, settings.output_device)
        self.rate = QtWidgets.QComboBox()
        for r in SAMPLE_RATES:
            self.rate.addItem(f"{r} Hz", r)
        self.rate.setCurrentIndex(SAMPLE_RATES.index(settings.sample_rate) if settings.sample_rate in SAMPLE_RATES else 1)
        self.block = QtWidgets.QComboBox()
        for b in BLOCK_SIZES:
            self.block.addItem(f"{b} samples", b)
        self.block.setCurrentIndex(BLOCK_SIZES.index(settings.block_size) if settings.block_size in BLOCK_SIZES else 2)
        form.addRow("Source", self.source)
        form.addRow("Input device", self.input)
        form.addRow("Output device", self.output)
        form.addRow("Sample rate", self.rate)
        form.addRow("Block size", self.block)
        if not outputs:
            note = QtWidgets.QLabel("No audio device found: the board runs to the scopes and meters only.")
            note.setWordWrap(True)
            form.addRow(note)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    @staticmethod
    def _devices(names, current):
        box = QtWidgets.QComboBox()
        box.addItem("system default", None)
        for n in names:
            box.addItem(n, n)
        if current in names:
            box.setCurrentIndex(names.index(current) + 1)
        return box

    def settings(self) -> AudioSettings:
        return AudioSettings(input_device=self.input.currentData(), output_device=self.output.currentData(),
                             sample_rate=int(self.rate.currentData()), block_size=int(self.block.currentData()),
                             source=self.source.currentData())
