"""The main window: transport toolbar, the board, scopes and meters, the inspector dock and the
status bar. GUI thread; one ~30 fps timer reads the engine's rings and counters and redraws.

The audio engine runs in its own process (``app.engine_process``): the window sends it the rack,
knob and bypass targets and the file player, and reads its meters from shared memory.
"""
from __future__ import annotations

import pathlib
import threading
import time

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.board import Board, PresetError
from app.engine import AudioSettings, Recorder, render_board
from app.engine_process import AudioProcess
from app.ui import theme
from app.ui.dialogs import SettingsDialog
from app.ui.inspectors import make_inspector
from app.ui.pedal_card import BoardView, PedalCard
from app.ui.scopes import GainReductionMeter, LevelMeter, Oscilloscope, Spectrum

FRAME_MS = 33
TEXT_EVERY_FRAMES = 8  # text readouts at ~4 Hz: a label's relayout costs more than a scope trace
ENGINE_RESTART_S = 5.0  # a dead engine process is restarted, at most this often
INSPECTOR_REFRESH_S = 0.12  # at most ~8 inspector recomputations per second while a knob moves


def _db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


class MainWindow(QtWidgets.QMainWindow):
    """The pedalboard.

    Args:
        board: the board to show (its rate is the stream's rate).
        settings: audio settings; the engine starts with them.
        use_device: False to run without opening an audio device (scopes and meters only).
        messages: lines to show at start (pedals left off the board, ...).
        engine: an engine process started earlier at the board's rate (it starts while the
            board loads), else the window starts one.
    """
    renderProgress = QtCore.Signal(int, int)
    renderDone = QtCore.Signal(str)

    def __init__(self, board: Board, settings: AudioSettings | None = None, use_device: bool = True,
                 messages=(), demo_path=None, engine: AudioProcess | None = None):
        super().__init__()
        self.setWindowTitle("knobnet — pedalboard")
        self.board = board
        self.settings = settings or AudioSettings(sample_rate=board.sample_rate)
        self.use_device = use_device
        self.engine = engine if engine is not None else AudioProcess(board.sample_rate)
        self.engine.set_rack(board.slots)
        self.clip_path = None
        self._engine_started = time.monotonic()
        self.recorder: Recorder | None = None
        self.inspector = None
        self.inspector_slot = None
        self._inspector_dirty = False
        self._inspector_last = 0.0
        self._render_thread = None
        self.demo_path = demo_path
        self._build()
        self.rebuild_cards()
        if demo_path is not None:
            self.open_clip(demo_path)
        self.start_audio()
        for m in messages:
            self.notify(m)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self.frame)
        self.timer.start()
        self.frames = 0
        self._update_readouts()

    # ---- layout ----
    def _build(self) -> None:
        tb = QtWidgets.QToolBar("transport")
        tb.setMovable(False)
        tb.setIconSize(QtCore.QSize(16, 16))
        self.addToolBar(tb)
        self.open_action = tb.addAction("Open WAV…", self.choose_clip)
        self.play_action = tb.addAction("▶ Play", self.toggle_play)
        self.play_action.setCheckable(True)
        self.loop_action = tb.addAction("⟲ Loop", self.toggle_loop)
        self.loop_action.setCheckable(True)
        self.loop_action.setChecked(True)
        self.record_action = tb.addAction("● Record", self.toggle_record)
        self.record_action.setCheckable(True)
        self.render_action = tb.addAction("Render…", self.choose_render)
        tb.addSeparator()
        self.input_gain = self._gain_slider(tb, "in", -24, 24, 0, self.set_input_gain)
        self.volume = self._gain_slider(tb, "vol", -60, 6, 0, self.set_volume)
        tb.addSeparator()
        self.add_box = QtWidgets.QComboBox()
        self.add_box.addItems(Board.available())
        self.add_box.setToolTip("pedal to add at the end of the board")
        tb.addWidget(self.add_box)
        tb.addAction("+ Add", self.add_selected)
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.record_action)
        file_menu.addAction(self.render_action)
        file_menu.addSeparator()
        file_menu.addAction("Quit", self.close, QtGui.QKeySequence.Quit)
        board_menu = menu.addMenu("&Board")
        board_menu.addAction("Load preset…", self.choose_preset, QtGui.QKeySequence.Open)
        board_menu.addAction("Save preset…", self.choose_save_preset, QtGui.QKeySequence.Save)
        audio_menu = menu.addMenu("&Audio")
        audio_menu.addAction("Settings…", self.open_settings)
        tb.addSeparator()
        tb.addAction("Presets…", self.choose_preset)
        tb.addAction("Audio settings…", self.open_settings)

        self.board_view = BoardView()
        self.board_view.moveRequested.connect(self.move_slot)

        self.scope = Oscilloscope(self.board.sample_rate)
        self.spectrum = Spectrum(self.board.sample_rate)
        self.meter_in, self.meter_out = LevelMeter("IN"), LevelMeter("OUT")
        self.gr_meter = GainReductionMeter()
        scopes = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(scopes)
        grid.setContentsMargins(8, 4, 8, 8)
        grid.addWidget(self.scope, 0, 0)
        grid.addWidget(self.spectrum, 0, 1)
        meters = QtWidgets.QHBoxLayout()
        meters.addWidget(self.meter_in)
        meters.addWidget(self.meter_out)
        grid.addLayout(meters, 0, 2)
        grid.addWidget(self.gr_meter, 1, 0, 1, 3)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

        split = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        split.addWidget(self.board_view)
        split.addWidget(scopes)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        self.setCentralWidget(split)

        self.dock = QtWidgets.QDockWidget("Inspector")
        self.dock.setObjectName("inspector")
        self.dock.setFeatures(QtWidgets.QDockWidget.DockWidgetClosable | QtWidgets.QDockWidget.DockWidgetMovable)
        self.dock.setMinimumWidth(340)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        sb = self.statusBar()
        sb.setSizeGripEnabled(False)
        self.status_device = QtWidgets.QLabel()
        self.status_latency = QtWidgets.QLabel()
        self.status_cpu = QtWidgets.QLabel()
        self.status_xruns = QtWidgets.QLabel()
        self.status_message = QtWidgets.QLabel()
        sb.addWidget(self.status_device)
        sb.addWidget(self.status_message, 1)
        for w in (self.status_cpu, self.status_latency, self.status_xruns):
            sb.addPermanentWidget(w)

    def _gain_slider(self, tb, label, lo, hi, value, slot):
        tb.addWidget(QtWidgets.QLabel(label))
        s = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.setFixedWidth(90)
        readout = QtWidgets.QLabel(f"{value:+d} dB")
        readout.setFixedWidth(46)
        s.valueChanged.connect(lambda v: (readout.setText(f"{v:+d} dB"), slot(v)))
        s.setToolTip(f"{'input gain' if label == 'in' else 'output volume'} in dB; double-click resets")
        tb.addWidget(s)
        tb.addWidget(readout)
        return s

    def notify(self, message: str) -> None:
        self.status_message.setText(message)
        self.status_message.setToolTip(message)

    # ---- board ----
    def rebuild_cards(self) -> None:
        cards = []
        for i, slot in enumerate(self.board.slots):
            card = PedalCard(slot, i)
            card.knobChanging.connect(lambda n, v, s=slot: self.set_knob(s, n, v))
            card.bypassToggled.connect(lambda b, s=slot: self.set_bypass(s, b))
            card.inspectRequested.connect(lambda s=slot: self.show_inspector(s))
            card.removeRequested.connect(lambda s=slot: self.remove_slot(s))
            card.moveRequested.connect(lambda d, s=slot: self.nudge_slot(s, d))
            cards.append(card)
        self.cards = cards
        self.board_view.set_cards(cards)

    def board_changed(self) -> None:
        """The pedal list changed: new cards, a new rack for the engine (swapped, faded)."""
        self.engine.set_rack(self.board.slots)
        self.rebuild_cards()
        if self.inspector_slot is not None and self.inspector_slot not in self.board.slots:
            self.dock.hide()
            self.inspector_slot = None

    def set_knob(self, slot, name, value) -> None:
        slot.pedal.set_knobs(**{name: value})
        self.engine.set_knobs(slot, **{name: value})
        if slot is self.inspector_slot:
            self._inspector_dirty = True

    def set_bypass(self, slot, bypassed) -> None:
        self.board.set_bypass(self.board.slots.index(slot), bypassed)
        self.engine.set_bypass(slot, bypassed)

    def move_slot(self, src: int, dst: int) -> None:
        self.board.move(src, dst)
        self.board_changed()
        self.cards[dst].setFocus()

    def nudge_slot(self, slot, direction: int) -> None:
        i = self.board.slots.index(slot)
        j = i + direction
        if 0 <= j < len(self.board.slots):
            self.move_slot(i, j)

    def remove_slot(self, slot) -> None:
        self.board.remove(self.board.slots.index(slot))
        self.board_changed()

    def add_selected(self) -> None:
        name = self.add_box.currentText()
        try:
            self.board.add(name)
        except (ValueError, OSError) as exc:
            self.notify(f"{name}: {exc}")
            return
        self.board_changed()
        self.notify(f"added {name}")

    # ---- inspector ----
    def show_inspector(self, slot) -> None:
        old = self.dock.widget()
        try:
            self.inspector = make_inspector(slot, meter=lambda: self.engine.gain_reduction_db(slot))
        except Exception as exc:  # a model's probe failing must not take the board down
            self.notify(f"{slot.name}: cannot inspect: {exc}")
            return
        self.inspector_slot = slot
        self.dock.setWidget(self.inspector)
        self.dock.setWindowTitle(f"Inspector — {slot.name.upper()}")
        if old is not None:
            old.deleteLater()
        self.dock.show()
        self.resizeDocks([self.dock], [max(340, min(640, self.width() - 930))], QtCore.Qt.Horizontal)

    # ---- transport ----
    def open_clip(self, path) -> None:
        from effects.audio_io import AudioFileError, read_mono
        try:
            audio = read_mono(path, self.board.sample_rate)
        except (AudioFileError, OSError) as exc:
            self.notify(f"cannot open {path}: {exc}")
            return
        name = pathlib.Path(path).name
        self.engine.set_player(audio.samples, name, loop=self.loop_action.isChecked())
        self.clip_path = path
        self.play_action.setChecked(True)
        self.play_action.setText("❚❚ Pause")
        self.notify(f"playing {name}" + (f" ({'; '.join(audio.notes)})" if audio.notes else ""))

    def choose_clip(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open audio", "", "Audio (*.wav *.flac *.aiff)")
        if path:
            self.open_clip(path)

    def toggle_play(self) -> None:
        if not self.engine.has_player:
            self.play_action.setChecked(False)
            return
        playing = self.play_action.isChecked()
        self.engine.set_playing(playing)
        self.play_action.setText("❚❚ Pause" if playing else "▶ Play")

    def toggle_loop(self) -> None:
        self.engine.set_loop(self.loop_action.isChecked())

    def toggle_record(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.notify(f"recorded {self.recorder.frames / self.board.sample_rate:.1f} s to {self.recorder.path}")
            self.recorder = None
            self.record_action.setText("● Record")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Record the board's output", "take.wav", "WAV (*.wav)")
        if not path:
            self.record_action.setChecked(False)
            return
        self.start_recording(path)

    def start_recording(self, path) -> None:
        self.recorder = Recorder(self.engine, path)
        self.record_action.setChecked(True)
        self.record_action.setText("■ Stop")
        self.notify(f"recording to {path}")

    def set_input_gain(self, db: float) -> None:
        self.engine.input_gain[0] = _db_to_gain(db)

    def set_volume(self, db: float) -> None:
        self.engine.output_volume[0] = 0.0 if db <= -60 else _db_to_gain(db)

    # ---- render ----
    def choose_render(self) -> None:
        src, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Render: input file", "", "Audio (*.wav *.flac *.aiff)")
        if not src:
            return
        dst, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Render: output file", "render.wav", "WAV (*.wav)")
        if dst:
            self.start_render(src, dst)

    def start_render(self, src, dst) -> None:
        """Render src through a copy of the board on a worker thread, with a progress dialog."""
        self.progress = QtWidgets.QProgressDialog("Rendering…", "Cancel", 0, 1000, self)
        self.progress.setWindowTitle("Render")
        self.progress.setMinimumDuration(0)
        cancelled = threading.Event()
        self.progress.canceled.connect(cancelled.set)
        self.renderProgress.connect(lambda d, t: self.progress.setValue(int(1000 * d / max(t, 1))))

        def work():
            try:
                render_board(self.board, src, dst, progress=lambda d, t, e: self.renderProgress.emit(d, t),
                             cancel=cancelled.is_set)
                self.renderDone.emit(f"rendered {src} -> {dst}")
            except Exception as exc:  # shown to the user, one line
                self.renderDone.emit(f"render failed: {exc}")
        self.renderDone.connect(self._render_done)
        self._render_thread = threading.Thread(target=work, name="knobnet-render", daemon=True)
        self._render_thread.start()

    def _render_done(self, message: str) -> None:
        self.progress.setValue(1000)
        self.progress.close()
        self.notify(message)
        self.renderDone.disconnect(self._render_done)

    # ---- presets ----
    def choose_preset(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load board preset", "", "knobnet board (*.json)")
        if path:
            self.load_preset(path)

    def load_preset(self, path) -> bool:
        try:
            self.board.load_preset(path)
        except PresetError as exc:
            self.notify(str(exc))
            if self.isVisible():  # non-blocking, so a test or a playing board never waits on it
                self.preset_error = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Warning, "Preset not loaded",
                                                          str(exc), parent=self)
                self.preset_error.open()
            return False
        self.board_changed()
        self.notify(f"loaded {path}")
        return True

    def choose_save_preset(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save board preset", "board.json", "knobnet board (*.json)")
        if path:
            self.board.save(path)
            self.notify(f"saved {path}")

    # ---- audio ----
    def start_audio(self) -> None:
        self.engine.start(self.settings, use_device=self.use_device)
        if not self.engine.has_player and not self.engine.use_input and self.demo_path is not None:
            self.open_clip(self.demo_path)
        self.status_device.setText(self.engine.status)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != QtWidgets.QDialog.Accepted:
            return
        new = dialog.settings()
        new.save()
        self.apply_settings(new)

    def apply_settings(self, settings: AudioSettings) -> None:
        self.engine.stop()
        self.settings = settings
        if settings.sample_rate != self.board.sample_rate:
            preset = self.board.to_preset()
            board = Board(settings.sample_rate)
            board.slots = board.slots_from_preset(preset)
            self.board = board
            self.scope.sample_rate = board.sample_rate
            self.spectrum.set_sample_rate(board.sample_rate)
            self.rebuild_cards()
            self.restart_engine()
        else:
            self.start_audio()

    def restart_engine(self) -> None:
        """A fresh engine process for the board (after a rate change, or when the last one died),
        with the clip, gains, knobs and bypass as they were; a recording in progress is closed."""
        if self.recorder is not None:
            self.toggle_record()
        self.engine.close()
        self.engine = AudioProcess(self.board.sample_rate)
        self.engine.set_rack(self.board.slots)
        self.set_input_gain(self.input_gain.value())
        self.set_volume(self.volume.value())
        if self.clip_path is not None:
            self.open_clip(self.clip_path)
        self.start_audio()

    # ---- the frame timer ----
    def frame(self) -> None:
        e = self.engine
        self.frames += 1
        n = max(2 * int(self.scope.window_ms * 1e-3 * e.sample_rate) + 1024, self.spectrum.n_fft)
        x_in, x_out = e.scope_in.latest(n), e.scope_out.latest(n)
        self.scope.update_from(x_in, x_out)
        self.spectrum.update_from(x_in, x_out)
        peak_in, peak_out = e.read_peaks()
        self.meter_in.set_peak(peak_in, peak_in >= 1.0)
        self.meter_out.set_peak(peak_out, peak_out >= 1.0)
        gr = next((g for g in map(e.gain_reduction_db, self.board.slots) if g is not None), None)
        self.gr_meter.set_gr(None if gr is None else max(0.0, -gr))
        if self.frames % TEXT_EVERY_FRAMES == 0:
            self._update_readouts()
            for message in e.poll_messages():
                self.notify(message)
            if not e.alive and time.monotonic() - self._engine_started > ENGINE_RESTART_S:
                self._engine_started = time.monotonic()
                self.restart_engine()
                self.notify("the audio engine stopped unexpectedly and was restarted")
        if self.recorder is not None:
            self.recorder.drain()
        if self.inspector is not None and self.dock.isVisible():
            self.inspector.tick()
            now = time.monotonic()
            if self._inspector_dirty and now - self._inspector_last >= INSPECTOR_REFRESH_S:
                self._inspector_dirty = False
                self._inspector_last = now
                self.inspector.refresh()

    def _update_readouts(self) -> None:
        """CPU per pedal and total, latency and xruns: text, refreshed a few times a second; the play
        button pops up when an unlooped clip has ended."""
        e = self.engine
        if self.play_action.isChecked() and e.player_ended:
            self.play_action.setChecked(False)
            self.play_action.setText("▶ Play")
        block_s = max(e.block_size, 1) / e.sample_rate
        for card in self.cards:
            card.set_cpu(e.slot_cpu_s(card.slot) / block_s)
        for label, text in ((self.status_cpu, f"CPU {100 * e.total_cpu_s() / block_s:.1f}%"),
                            (self.status_latency, f"latency {1e3 * e.latency_s:.1f} ms"),
                            (self.status_xruns, f"xruns {int(e.xruns[0])}")):
            if label.text() != text:
                label.setText(text)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.timer.stop()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.engine.close()
        super().closeEvent(event)
