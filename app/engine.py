"""The audio engine: a sounddevice stream whose callback runs the board's rack, plus ring buffers
for the scopes, meters, a file player, a recorder and an offline render.

Threads:
  * ``Engine.process_block`` (and ``_callback`` around it) runs on the audio thread: it reads the
    rack reference once, processes, and writes scopes, meters and counters into preallocated
    arrays. It takes no lock, makes no Qt call and allocates no arrays.
  * Everything else (start/stop, ``set_rack``, reading meters, ``Recorder.drain``, settings)
    runs on the GUI thread. ``render_board`` runs on a GUI worker thread.
  * With no audio device, ``NullStream`` runs ``process_block`` on its own thread at the
    real-time pace, so the scopes and meters work without any output.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import threading
import time

import numpy as np
from numba import njit

from app.board import MAX_BLOCK, Rack

CALLBACK_HISTORY = 1 << 16  # callback durations kept for the p99


@njit(nogil=True, fastmath=True, cache=True)
def peak_abs(x):
    """Largest |x| of a (T,) float32 block."""
    m = np.float32(0.0)
    for i in range(x.shape[0]):
        v = abs(x[i])
        if v > m:
            m = v
    return m


@njit(nogil=True, fastmath=True, cache=True)
def ramp_scale(x, g0, g1):
    """x *= a linear ramp from g0 (first sample) to g1 (after the last) in place."""
    n = x.shape[0]
    d = (g1 - g0) / max(n, 1)
    for i in range(n):
        x[i] *= g0 + d * i


@njit(nogil=True, fastmath=True, cache=True)
def crossfade_blocks(old, new):
    """old = a linear crossfade from old (first sample) to new (after the last), in place."""
    n = old.shape[0]
    for i in range(n):
        g = np.float32(i / n)
        old[i] += (new[i] - old[i]) * g


def warm_up_kernels() -> None:
    """Call every compiled kernel the callback uses once, so the first call (a JIT cache load or a
    compile) happens on the calling thread and never in the audio callback."""
    from app.board import crossfade, delay_through
    a, b = np.zeros(4, np.float32), np.zeros(4, np.float32)
    peak_abs(a)
    ramp_scale(a, 1.0, 1.0)
    crossfade_blocks(a, b)
    crossfade(a, b, b, np.ones(2, np.float32), np.float32(0.5))
    delay_through(a, b, np.zeros(2, np.float32), np.zeros(1, np.int64))


class Ring:
    """A single-writer ring of float32 samples; the reader copies the newest samples.

    The writer (audio thread) advances ``written[0]``; a reader (GUI thread, possibly in another
    process through shared memory) may see a block that is being overwritten, which a scope
    tolerates and nothing else depends on.
    """

    def __init__(self, buf: np.ndarray, written: np.ndarray):
        self.buf, self.written = buf, written

    @classmethod
    def allocate(cls, size: int) -> "Ring":
        return cls(np.zeros(size, np.float32), np.zeros(1, np.int64))

    def write(self, x: np.ndarray) -> None:
        n, size = x.shape[0], self.buf.shape[0]
        w = int(self.written[0] % size)
        first = min(n, size - w)
        self.buf[w:w + first] = x[:first]
        if first < n:
            self.buf[:n - first] = x[first:]
        self.written[0] += n

    def latest(self, n: int) -> np.ndarray:
        """The newest n samples, oldest first (a copy). GUI thread."""
        size = self.buf.shape[0]
        n = min(n, size)
        end = int(self.written[0] % size)
        idx = (np.arange(end - n, end)) % size
        return self.buf[idx]

    def since(self, position: int) -> tuple[np.ndarray, int]:
        """Samples written after ``position`` (at most the ring's size) and the new position."""
        end = int(self.written[0])
        n = min(end - position, self.buf.shape[0])
        if n <= 0:
            return np.zeros(0, np.float32), end
        idx = np.arange(end - n, end) % self.buf.shape[0]
        return self.buf[idx], end


MAX_SLOTS = 32  # pedals a rack may hold (per-slot meters are fixed-size arrays)


class EngineArrays:
    """Every array the audio thread writes and the GUI reads, carved out of one buffer.

    The buffer is a ``bytearray`` for an in-process engine, or a shared-memory block when the
    engine runs in its own process (``app.engine_process``): both sides build the same layout
    from the same arguments and see the same numbers.

    Args:
        sample_rate: the stream's rate (sizes the rings).
        scope_seconds: length of the scope rings.
        record_seconds: length of the record ring (the GUI drains it ~30 times a second).
        buffer: the memory to lay the arrays over (``None``: a new bytearray).
    """

    def __init__(self, sample_rate: int, scope_seconds: float = 2.0, record_seconds: float = 4.0, buffer=None):
        n_scope, n_record = int(scope_seconds * sample_rate), int(record_seconds * sample_rate)
        layout = [  # name, dtype, count
            ("scope_in", np.float32, n_scope), ("scope_in_written", np.int64, 1),
            ("scope_out", np.float32, n_scope), ("scope_out_written", np.int64, 1),
            ("record", np.float32, n_record), ("record_written", np.int64, 1),
            ("recording", np.int64, 1),  # 1 while a recorder drains the record ring
            ("input_gain", np.float32, 2), ("output_volume", np.float32, 2),  # [target, current]
            ("peaks", np.float32, 2),  # max |x| of input, output since the GUI last read them
            ("clips", np.int64, 2),  # blocks with a sample at or beyond full scale
            ("callbacks", np.int64, 1), ("xruns", np.int64, 1),
            ("callback_s", np.float64, CALLBACK_HISTORY),  # durations of the last callbacks
            ("slot_cpu_s", np.float64, MAX_SLOTS),  # seconds each slot of the running rack took
            ("rack_generation", np.int64, 1),  # ``Rack.generation`` of the rack the callback runs
            ("gain_reduction_db", np.float64, MAX_SLOTS),  # per slot of the running rack, where metered
            ("player", np.int64, 3),  # file player: playing, position, length (samples)
        ]
        offsets, size = [], 0
        for _, dtype, count in layout:
            size = -(-size // 8) * 8
            offsets.append(size)
            size += np.dtype(dtype).itemsize * count
        self.nbytes = size
        self.buffer = bytearray(size) if buffer is None else buffer
        for (name, dtype, count), offset in zip(layout, offsets):
            setattr(self, name, np.frombuffer(self.buffer, dtype, count, offset))
        self.scope_in_ring = Ring(self.scope_in, self.scope_in_written)
        self.scope_out_ring = Ring(self.scope_out, self.scope_out_written)
        self.record_ring = Ring(self.record, self.record_written)
        if buffer is None:
            self.input_gain[:] = 1.0
            self.output_volume[:] = 1.0

    def callback_stats(self, sample_rate: int, block_size: int) -> dict:
        """Callbacks, xruns and callback-time percentiles (ms) of the last CALLBACK_HISTORY blocks."""
        n = int(min(self.callbacks[0], CALLBACK_HISTORY))
        t = self.callback_s[:n] * 1e3
        stats = {"callbacks": int(self.callbacks[0]), "xruns": int(self.xruns[0]),
                 "block_ms": 1e3 * block_size / sample_rate}
        if n:
            stats.update(p50_ms=float(np.percentile(t, 50)), p99_ms=float(np.percentile(t, 99)),
                         max_ms=float(t.max()))
        return stats

    def read_peaks(self) -> tuple[float, float]:
        """Input and output peaks since the last call (linear)."""
        p = (float(self.peaks[0]), float(self.peaks[1]))
        self.peaks[:] = 0.0
        return p


@dataclasses.dataclass
class AudioSettings:
    """Device choice, remembered between runs as JSON in the user's config folder."""
    input_device: str | None = None
    output_device: str | None = None
    sample_rate: int = 48000
    block_size: int = 128
    source: str = "input"  # "input" (the interface's input) or "file" (the file player)

    @staticmethod
    def path() -> pathlib.Path:
        base = os.environ.get("KNOBNET_CONFIG_DIR") or os.path.join(
            os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "knobnet")
        return pathlib.Path(base) / "audio.json"

    @classmethod
    def load(cls) -> "AudioSettings":
        try:
            data = json.loads(cls.path().read_text())
            fields = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in fields})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self) -> None:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")


class FilePlayer:
    """A clip at the engine's rate, played (and looped) from the audio thread."""

    def __init__(self, samples: np.ndarray, name: str = ""):
        self.samples = np.ascontiguousarray(samples, np.float32)
        self.name = name
        self.position = 0
        self.loop = True
        self.playing = True

    def read(self, out: np.ndarray) -> None:
        """Fill out (T,) with the next samples (silence when stopped or past the end). Audio thread."""
        n, total = out.shape[0], self.samples.shape[0]
        if not self.playing or total == 0:
            out[:] = 0.0
            return
        done = 0
        while done < n:
            if self.position >= total:
                if not self.loop:
                    out[done:] = 0.0
                    self.playing = False
                    return
                self.position = 0
            m = min(n - done, total - self.position)
            out[done:done + m] = self.samples[self.position:self.position + m]
            self.position += m
            done += m


class Engine:
    """Runs a rack on blocks from the input (or the file player) and keeps what the GUI shows.

    Args:
        rack: the first rack to run.
        sample_rate: the stream's rate in Hz (the board's rate).
        scope_seconds: length of the scope rings.
    """

    def __init__(self, rack: Rack, sample_rate: int, scope_seconds: float = 2.0, arrays: EngineArrays | None = None):
        self.sample_rate = int(sample_rate)
        self._next_rack: Rack | None = None
        self.player: FilePlayer | None = None
        self.use_input = False
        self.arrays = a = arrays or EngineArrays(sample_rate, scope_seconds)
        self.input_gain, self.output_volume = a.input_gain, a.output_volume
        self.scope_in, self.scope_out, self.record_ring = a.scope_in_ring, a.scope_out_ring, a.record_ring
        self.peaks, self.clips, self.callbacks, self.xruns = a.peaks, a.clips, a.callbacks, a.xruns
        self.callback_s = a.callback_s
        self._recording = a.recording
        self._take_rack(rack)
        self._x = np.zeros(MAX_BLOCK, np.float32)
        self._y = np.zeros(MAX_BLOCK, np.float32)
        self._y_next = np.zeros(MAX_BLOCK, np.float32)
        self._synced: Rack | None = None  # the pending rack whose copies hold the running state
        self._fade_in = False
        self.stream = None
        self.device_latency_s = 0.0
        self.block_size = 128
        self.status = "stopped"

    # ---- GUI thread ----
    def set_rack(self, rack: Rack) -> None:
        """Hand a new rack to the audio thread; it fades the old one out and the new one in."""
        if self.stream is None:
            self._take_rack(rack)
        else:
            self._next_rack = rack

    def _take_rack(self, rack: Rack) -> None:
        self.rack = rack
        self.arrays.rack_generation[0] = rack.generation

    def _take_swap(self, swap: Rack) -> None:
        self._take_rack(swap)
        self._synced = None
        if self._next_rack is swap:  # (the GUI may have sent a newer one meanwhile)
            self._next_rack = None

    def set_player(self, player: FilePlayer | None) -> None:
        self.player = player

    def read_peaks(self) -> tuple[float, float]:
        return self.arrays.read_peaks()

    def callback_stats(self) -> dict:
        return self.arrays.callback_stats(self.sample_rate, self.block_size)

    @property
    def latency_s(self) -> float:
        """Device latency + one block + the rack's (resampling) latency, in seconds."""
        return self.device_latency_s + (self.block_size + self.rack.latency_samples) / self.sample_rate

    def start(self, settings: AudioSettings | None = None, use_device: bool = True) -> str:
        """Open the stream (or a NullStream when no device can be opened). Returns a status line."""
        self.stop()
        settings = settings or AudioSettings()
        self.block_size = int(settings.block_size)
        self.use_input = settings.source == "input"
        if self._next_rack is not None:
            self._take_rack(self._next_rack)
            self._next_rack = None
        if use_device:
            try:
                self._start_device(settings)
                return self.status
            except Exception as exc:  # PortAudio raises several types; any failure -> no device
                self.status = f"no audio output ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})" \
                              "; scopes and meters only"
        else:
            self.status = "no audio device; scopes and meters only"
        self.use_input = False
        self.stream = NullStream(self, self.block_size)
        self.stream.start()
        return self.status

    def _start_device(self, settings: AudioSettings) -> None:
        import sys
        import sounddevice as sd
        # The callback needs the GIL within a block (2.7 ms at 128/48 kHz); Python's default
        # switch interval (5 ms) lets the GUI thread hold it longer than that.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        devices = sd.query_devices()
        if not any(d["max_output_channels"] > 0 for d in devices):
            raise RuntimeError("no output device")
        out_dev = settings.output_device
        in_dev = settings.input_device
        has_input = in_dev is not None or any(d["max_input_channels"] > 0 for d in devices)
        if self.use_input and has_input:
            stream = sd.Stream(samplerate=self.sample_rate, blocksize=self.block_size,
                               device=(in_dev, out_dev), channels=(1, 2), dtype="float32",
                               latency="low", callback=self._duplex_callback)
        else:
            self.use_input = False
            stream = sd.OutputStream(samplerate=self.sample_rate, blocksize=self.block_size, device=out_dev,
                                     channels=2, dtype="float32", latency="low",
                                     callback=self._output_callback)
        self.stream = stream
        stream.start()
        lat = stream.latency
        self.device_latency_s = float(sum(lat) if isinstance(lat, (tuple, list)) else lat)
        device = sd.query_devices(stream.device[1] if isinstance(stream.device, (tuple, list)) else stream.device)
        host = sd.query_hostapis(device["hostapi"])["name"]
        self.status = f"{'input' if self.use_input else 'file player'} -> {device['name']} ({host})"

    def stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        if self._next_rack is not None:
            self._take_rack(self._next_rack)
            self._next_rack = None
        self.device_latency_s = 0.0
        self.status = "stopped"

    # ---- audio thread ----
    def _duplex_callback(self, indata, outdata, frames, time_info, status):
        if status:
            self._count_xrun(status)
        self._callback_body(indata[:, 0], outdata, frames)

    def _output_callback(self, outdata, frames, time_info, status):
        if status:
            self._count_xrun(status)
        self._callback_body(None, outdata, frames)

    def _count_xrun(self, status) -> None:
        """Count a block the device reported as under- or overflowing (priming is not an xrun)."""
        if isinstance(status, str) or (status.output_underflow or status.input_overflow
                                       or status.input_underflow or status.output_overflow):
            self.xruns[0] += 1

    def _callback_body(self, indata, outdata, frames):
        t0 = time.perf_counter()
        y = self._y[:frames]
        self.process_block(indata, y)
        outdata[:, 0] = y
        outdata[:, 1] = y
        k = int(self.callbacks[0] % CALLBACK_HISTORY)
        self.callback_s[k] = time.perf_counter() - t0
        self.callbacks[0] += 1

    def _meter(self, buf, channel: int) -> None:
        """Hold the block's peak and count clipped blocks for meter channel 0 (in) or 1 (out)."""
        p = peak_abs(buf)
        if p > self.peaks[channel]:
            self.peaks[channel] = p
        if p >= 1.0:
            self.clips[channel] += 1

    def process_block(self, indata, out: np.ndarray) -> None:
        """One block: source -> input gain -> rack -> volume -> out; scopes and meters updated.

        Args:
            indata: (T,) float32 input, or None to take the file player (or silence).
            out: (T,) float32, T <= MAX_BLOCK, filled in place.
        """
        n = out.shape[0]
        x = self._x[:n]
        if indata is not None and self.use_input:
            x[:] = indata
        elif self.player is not None:
            self.player.read(x)
        else:
            x[:] = 0.0
        g = self.input_gain
        ramp_scale(x, g[1], g[0])
        g[1] = g[0]
        self.scope_in.write(x)
        self._meter(x, 0)
        swap = self._next_rack
        self.rack.process(x, out)
        if swap is not None and swap is self._synced:
            # The copies hold the running pedals' state as of this block: both orders play it and
            # the output crossfades from the old one to the new.
            y_next = self._y_next[:n]
            swap.process(x, y_next)
            crossfade_blocks(out, y_next)
            self._take_swap(swap)
        else:
            if self._fade_in:
                ramp_scale(out, 0.0, 1.0)
                self._fade_in = False
            if swap is not None:
                if swap.sync_from(self.rack):  # copies of the running pedals: crossfade next block
                    self._synced = swap
                else:  # the same pedals: fade the old rack out over this block, the new one in over the next
                    ramp_scale(out, 1.0, 0.0)
                    self._take_swap(swap)
                    self._fade_in = True
        v = self.output_volume
        ramp_scale(out, v[1], v[0])
        v[1] = v[0]
        self.scope_out.write(out)
        self._meter(out, 1)
        if self._recording[0]:
            self.record_ring.write(out)



class NullStream:
    """Runs ``engine.process_block`` on a thread at the real-time pace, with no audio device.

    Late blocks are not counted as xruns: with no device nothing underruns."""

    def __init__(self, engine: Engine, block_size: int):
        self.engine = engine
        self.block_size = block_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="knobnet-null-audio", daemon=True)
        self.latency = 0.0
        self.device = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        e, n = self.engine, self.block_size
        period = n / e.sample_rate
        y = np.zeros((n, 2), np.float32)
        deadline = time.perf_counter()
        while not self._stop.is_set():
            e._callback_body(None, y, n)
            deadline += period
            wait = deadline - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -period:  # a whole block late: catch up (no device, so no xrun to count)
                deadline = time.perf_counter()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def close(self) -> None:
        pass


class Recorder:
    """Drains the engine's record ring into a WAV file (32-bit float). GUI thread."""

    def __init__(self, engine: Engine, path):
        import soundfile as sf
        self.engine = engine
        self.path = pathlib.Path(path)
        self.file = sf.SoundFile(str(self.path), "w", samplerate=engine.sample_rate, channels=1, subtype="FLOAT")
        self.frames = 0
        self._pos = int(engine.record_ring.written[0])
        engine.arrays.recording[0] = 1

    def drain(self) -> int:
        """Write what the callback recorded since the last drain; returns frames written so far."""
        x, self._pos = self.engine.record_ring.since(self._pos)
        if x.size:
            self.file.write(x)
            self.frames += x.size
        return self.frames

    def close(self) -> None:
        self.engine.arrays.recording[0] = 0
        self.drain()
        self.file.close()


def render_board(board, in_path, out_path, block_size: int = 4096, progress=None, cancel=None) -> None:
    """Render a file through fresh copies of the board's pedals (same knobs, bypass, order).

    Runs on a worker thread; the live pedals are never touched. ``progress(done, total, elapsed)``.
    """
    from effects.render import render_file
    from effects import Chain
    from app.board import Board
    copy = Board(board.sample_rate)
    copy.slots = copy.slots_from_preset(board.to_preset())
    pedals = [s.pedal for s in copy.slots if not s.bypassed]

    def report(done, total, elapsed):
        if cancel is not None and cancel():
            raise InterruptedError("render cancelled")
        if progress is not None:
            progress(done, total, elapsed)
    render_file(Chain(pedals, sample_rate=board.sample_rate), in_path, out_path, block_size, report)
