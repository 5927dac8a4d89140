"""The audio engine in its own process, so the GUI thread never holds the GIL the callback needs.

In one process the audio callback waits for the GIL whenever the GUI thread runs Python (pyqtgraph
redraws, layout): measured on JACK at 128 frames, 12.6 % of callbacks came late. Here the
engine process owns the sounddevice stream, its own copy of every pedal, and nothing else; its
main thread sleeps in ``poll`` between commands, so the callback thread has the GIL to itself.

Two channels join the processes:
  * a pipe of commands (GUI -> engine): the rack's slots in order, knob targets, bypass, the file
    player, start/stop; and replies/events back (start status, errors);
  * one shared-memory block laid out by ``EngineArrays``: the scope and record rings, meters,
    counters, callback times, per-slot CPU and gain reduction, written by the engine and read by
    the GUI; the input gain and output volume targets, written by the GUI.

Threads: ``AudioProcess`` methods run on the GUI thread. ``_engine_main`` is the engine
process's main thread; the engine's callback runs on that process's audio thread.
"""
from __future__ import annotations

import copy
import gc
import multiprocessing
import os
import sys
import traceback
from multiprocessing import shared_memory

import numpy as np

from app.engine import AudioSettings, Engine, EngineArrays, FilePlayer, warm_up_kernels

START_TIMEOUT_S = 60.0  # model loading and the JIT cache on a cold machine
PUBLISH_S = 0.03  # the engine process refreshes the slower meters (gain reduction, player) this often


def _slot_spec(slot) -> dict:
    """What the engine process needs to build (or find) its copy of a slot."""
    return {"id": slot.id, "name": slot.name, "model_path": slot.model_path,
            "knobs": slot.pedal.knob_values(), "mix": float(slot.mix[0])}


class AudioProcess:
    """The GUI's handle on the engine running in another process.

    Offers what the window reads and sets: ``start``/``stop``/``close``, ``set_rack``, knob and
    bypass targets, the file player, the recorder's ring, meters, counters and the latency.

    Args:
        sample_rate: the board's rate, which the stream uses.
        scope_seconds: length of the scope rings.

    The process starts (and imports its libraries) at once; it runs nothing until ``set_rack``.
    """

    def __init__(self, sample_rate: int, scope_seconds: float = 2.0):
        self.sample_rate = int(sample_rate)
        layout = dict(sample_rate=self.sample_rate, scope_seconds=scope_seconds)
        size = EngineArrays(**layout).nbytes
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        self.arrays = a = EngineArrays(**layout, buffer=self._shm.buf)
        a.input_gain[:] = 1.0
        a.output_volume[:] = 1.0
        self.input_gain, self.output_volume = a.input_gain, a.output_volume
        self.scope_in, self.scope_out, self.record_ring = a.scope_in_ring, a.scope_out_ring, a.record_ring
        self.callbacks, self.xruns, self.callback_s, self.clips = a.callbacks, a.xruns, a.callback_s, a.clips
        self.block_size = 128
        self.device_latency_s = 0.0
        self.use_input = False
        self.status = "stopped"
        self.messages: list[str] = []  # errors the engine reported, for the window to show
        self.player_name: str | None = None
        self._racks: dict[int, tuple[tuple[int, ...], int]] = {}  # generation -> (slot ids, latency samples)
        self._generation = 0
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs Qt
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_engine_main, args=(child, self._shm.name, layout),
                                 name="knobnet-audio", daemon=True)
        self._proc.start()
        child.close()

    # ---- commands ----
    def _send(self, *message) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError):
            self.status = "audio engine stopped"

    def set_rack(self, slots) -> None:
        """Hand the slots (in order) to the engine; it keeps the pedals it has and loads new ones."""
        self._generation += 1
        running = int(self.arrays.rack_generation[0])
        self._racks = {g: r for g, r in self._racks.items() if g >= running}  # older ones never run again
        self._racks[self._generation] = (tuple(s.id for s in slots), sum(s.latency_samples for s in slots))
        self._send("rack", self._generation, [_slot_spec(s) for s in slots])

    def set_knobs(self, slot, **values) -> None:
        self._send("knobs", slot.id, values)

    def set_bypass(self, slot, bypassed: bool) -> None:
        self._send("bypass", slot.id, bypassed)

    def set_player(self, samples: np.ndarray, name: str = "", loop: bool = True) -> None:
        self.player_name = name
        self._send("player", np.ascontiguousarray(samples, np.float32), name, loop)

    def set_playing(self, playing: bool) -> None:
        """Play or pause the file player (play at the end of an unlooped clip starts it again)."""
        self._send("play", playing)

    def set_loop(self, loop: bool) -> None:
        self._send("loop", loop)

    @property
    def has_player(self) -> bool:
        return self.player_name is not None

    @property
    def player_ended(self) -> bool:
        """The file player stopped at the end of a clip it does not loop."""
        playing, position, length = self.arrays.player
        return not playing and 0 < length <= position

    def start(self, settings: AudioSettings | None = None, use_device: bool = True) -> str:
        """Open the stream in the engine process; returns its status line (device, or why none)."""
        settings = settings or AudioSettings(sample_rate=self.sample_rate)
        self._send("start", settings, use_device)
        reply = self._wait_for("started")
        if reply is None:
            self.status = "audio engine did not start (see the terminal)"
        else:
            self.status, self.device_latency_s, self.use_input, self.block_size = reply[1:]
        return self.status

    def stop(self) -> None:
        self._send("stop")
        self._wait_for("stopped", timeout_s=10.0)
        self.status = "stopped"

    def close(self) -> None:
        """Stop the stream, end the engine process and free the shared memory."""
        if self._proc.is_alive():
            self._send("quit")
            self._proc.join(timeout=5.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5.0)
        self._conn.close()
        # The arrays are views of the block: drop them before closing it.
        self.arrays = self.input_gain = self.output_volume = None
        self.scope_in = self.scope_out = self.record_ring = None
        self.callbacks = self.xruns = self.callback_s = self.clips = None
        try:
            self._shm.close()
        except BufferError:  # a view is still alive somewhere: leave the mapping to process exit
            pass
        self._shm.unlink()

    def _wait_for(self, kind: str, timeout_s: float = START_TIMEOUT_S):
        """Read events until ``kind`` arrives (others are kept as messages); None on timeout or exit."""
        import time
        deadline = time.monotonic() + timeout_s
        while self._proc.is_alive() or self._conn.poll():
            left = deadline - time.monotonic()
            if left <= 0 or not self._conn.poll(min(left, 0.5)):
                if left <= 0:
                    return None
                continue
            try:
                event = self._conn.recv()
            except (EOFError, OSError):
                return None
            if event[0] == kind:
                return event
            self._take_event(event)
        return None

    def _take_event(self, event) -> None:
        if event[0] == "error":
            self.messages.append(event[1])

    def poll_messages(self) -> list[str]:
        """Errors the engine reported since the last call (and whether it died)."""
        try:
            while self._conn.poll():
                self._take_event(self._conn.recv())
        except (EOFError, OSError):
            pass
        if not self._proc.is_alive() and self.status != "audio engine stopped":
            self.status = "audio engine stopped"
            self.messages.append(f"the audio engine process ended (exit code {self._proc.exitcode})")
        out, self.messages = self.messages, []
        return out

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    # ---- what the GUI reads ----
    def running_slot_ids(self) -> tuple[int, ...]:
        """Ids of the slots of the rack the callback runs now, in order (empty before the first)."""
        return self._racks.get(int(self.arrays.rack_generation[0]), ((), 0))[0]

    def _slot_index(self, slot) -> int | None:
        ids = self.running_slot_ids()
        return ids.index(slot.id) if slot.id in ids else None

    def slot_cpu_s(self, slot) -> float:
        """Seconds the slot took in the last block (0 when bypassed or not running)."""
        i = self._slot_index(slot)
        return 0.0 if i is None else float(self.arrays.slot_cpu_s[i])

    def total_cpu_s(self) -> float:
        return float(self.arrays.slot_cpu_s[:len(self.running_slot_ids())].sum())

    def gain_reduction_db(self, slot) -> float | None:
        """The slot's gain-reduction meter in dB (<= 0), or None when it has none."""
        i = self._slot_index(slot)
        if i is None:
            return None
        v = float(self.arrays.gain_reduction_db[i])
        return None if np.isnan(v) else v

    def read_peaks(self) -> tuple[float, float]:
        return self.arrays.read_peaks()

    def callback_stats(self) -> dict:
        return self.arrays.callback_stats(self.sample_rate, self.block_size)

    @property
    def latency_s(self) -> float:
        """Device latency + one block + the running rack's (resampling) latency, in seconds."""
        rack = self._racks.get(int(self.arrays.rack_generation[0]), ((), 0))[1]
        return self.device_latency_s + (self.block_size + rack) / self.sample_rate


# ---- the engine process ----

def _engine_main(conn, shm_name: str, layout: dict) -> None:
    """Entry point of the engine process: build the engine on the shared arrays, serve commands."""
    from app.board import Board, Rack
    # Attaching registers the block with the resource tracker this process shares with the GUI
    # (spawn passes it on): one registration, which the GUI's unlink removes.
    shm = shared_memory.SharedMemory(name=shm_name)
    arrays = EngineArrays(**layout, buffer=shm.buf)
    board = Board(layout["sample_rate"])
    known: dict[int, list] = {}  # slot id -> the copies of that slot (running, pending, spare)
    nothing = Rack([], board.sample_rate, cpu_s=arrays.slot_cpu_s)
    nothing.generation = 0  # before the GUI's first rack (its generations count from 1)
    engine = Engine(nothing, board.sample_rate, arrays=arrays)
    arrays.gain_reduction_db[:] = np.nan
    warm_up_kernels()
    gc.set_threshold(20000, 50, 100)  # the main thread allocates little; collect rarely
    warm, warm_out = np.zeros(4096, np.float32), np.zeros(4096, np.float32)

    def error(message: str) -> None:
        try:
            conn.send(("error", message))
        except (BrokenPipeError, OSError):
            pass

    def set_rack(generation: int, specs: list[dict]) -> None:
        """Build the rack the GUI describes from copies of the pedals already playing (the callback
        gives them the playing pedals' state at the swap and crossfades) and fresh ones for new ids."""
        ordered = []
        for spec in specs:
            if spec["id"] in known:
                slot = free_copy(spec["id"])
            else:
                try:
                    slot = board.make_slot(spec["name"], spec["model_path"])
                    slot.id = spec["id"]
                    slot.pedal.set_knobs(**spec["knobs"])
                except Exception as exc:  # a pedal the GUI could load but this process cannot
                    error(f"{spec['name']}: the audio engine could not load it: {exc}")
                    continue
                slot.mix[:] = spec["mix"]
                warm_up(slot)
                known[spec["id"]] = [slot, copy.deepcopy(slot)]  # and a spare for the next reorder
            ordered.append(slot)
        for gone in set(known) - {s["id"] for s in specs}:
            del known[gone]  # the running rack keeps its pedals alive until the swap
        rack = Rack(ordered, board.sample_rate, cpu_s=arrays.slot_cpu_s)
        rack.generation = generation
        rack.plan_sync(engine.rack)
        # Out of the cyclic collector's reach: a full collection would hold the interpreter lock
        # for milliseconds while the callback waits for it.
        gc.collect()
        gc.freeze()
        engine.set_rack(rack)

    def warm_up(slot) -> None:
        """Play a block, and one with every knob moving, then reset: the first calls of the
        kernels and of the knob-change code (JIT cache loads, NumPy's first-call set-up) happen on
        this thread, not in the audio callback."""
        pedal = slot.pedal
        values = pedal.knob_values()
        slot.chain.process(warm, warm_out)
        pedal.set_knobs(**{k.name: k.minimum if values[k.name] != k.minimum else k.maximum for k in pedal.knobs})
        slot.chain.process(warm, warm_out)
        pedal.set_knobs(**values)
        slot.chain.reset()

    def free_copy(sid: int):
        """A copy of slot ``sid`` that neither the running nor the pending rack holds.

        The copies of a slot take turns: the one the last swap retired is free again, so a
        reorder copies no pedal here (a deep copy holds the interpreter lock for milliseconds,
        which the callback would wait on).
        """
        pending = engine._next_rack
        busy = {id(engine.rack.by_id.get(sid)), id(pending.by_id.get(sid) if pending is not None else None)}
        copies = known[sid]
        for slot in copies:
            if id(slot) not in busy:
                return slot
        copies.append(copy.deepcopy(copies[0]))
        return copies[-1]

    def set_knobs(sid: int, values: dict) -> None:
        for slot in known.get(sid, ()):
            slot.pedal.set_knobs(**values)

    def set_bypass(sid: int, bypassed: bool) -> None:
        for slot in known.get(sid, ()):
            slot.mix[0] = 0.0 if bypassed else 1.0

    def publish() -> None:
        rack = engine.rack
        for i, slot in enumerate(rack.slots):
            gr = getattr(slot.pedal, "gain_reduction_db", None)
            arrays.gain_reduction_db[i] = np.nan if gr is None else float(gr)
        p = engine.player
        arrays.player[:] = (0, 0, 0) if p is None else (int(p.playing), p.position, p.samples.shape[0])

    handlers = {
        "rack": set_rack,
        "knobs": set_knobs,
        "bypass": set_bypass,
        "loop": lambda loop: setattr(engine.player, "loop", loop) if engine.player else None,
    }

    def set_player(samples, name, loop):
        player = FilePlayer(samples, name)
        player.loop = loop
        engine.set_player(player)

    def play(playing):
        p = engine.player
        if p is not None:
            if playing and p.position >= p.samples.shape[0]:
                p.position = 0
            p.playing = playing

    handlers.update(player=set_player, play=play)
    try:
        while True:
            if not conn.poll(PUBLISH_S):
                publish()
                if os.getppid() == 1:  # the GUI died without telling us
                    break
                continue
            try:
                command, *args = conn.recv()
            except (EOFError, OSError):
                break
            if command == "quit":
                break
            try:
                if command == "start":
                    status = engine.start(*args)
                    conn.send(("started", status, engine.device_latency_s, engine.use_input, engine.block_size))
                elif command == "stop":
                    engine.stop()
                    conn.send(("stopped",))
                else:
                    handlers[command](*args)
            except Exception as exc:  # one bad command must not end the audio
                traceback.print_exc(file=sys.stderr)
                error(f"audio engine: {command}: {exc}")
                if command == "start":
                    conn.send(("started", f"no audio ({exc})", 0.0, False, engine.block_size))
    finally:
        engine.stop()
        del engine, arrays, known, nothing
        gc.collect()
        try:
            shm.close()
        except BufferError:
            pass
