"""Board state (pedal order, knobs, bypass, model files), versioned JSON presets, and the Rack.

Threads: ``Board`` lives on the GUI thread. ``Board.rack()`` builds a ``Rack``, the object the
audio callback runs; the GUI never changes a rack's pedal list, it builds a new rack and the
engine swaps its reference. Knob moves go to the pedals as targets (``Pedal.set_knobs``) and
bypass moves go to a slot's ``mix`` array as a target; the audio thread ramps both.
``Rack.process`` runs on the audio thread and allocates nothing.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import time

import numpy as np
from numba import njit

from effects import Chain, ModelFileError, Pedal, list_pedals, load_pedal

PRESET_FORMAT = "knobnet-board"
PRESET_VERSION = 1
DEFAULT_ORDER = ("od3", "la2a", "jvm")
BYPASS_FADE_MS = 10.0
MAX_BLOCK = 8192
_slot_ids = itertools.count(1)
_rack_generations = itertools.count(1)


class PresetError(ValueError):
    """A preset file is unreadable, corrupt, of another version, or names what cannot be built."""


@njit(nogil=True, fastmath=True, cache=True)
def crossfade(dry, wet, out, mix, step):
    """out = dry + (wet - dry) * g with g ramping from mix[1] toward mix[0] by step per sample.

    Args:
        dry, wet, out: (T,) float32; out may alias wet or dry.
        mix: (2,) float32 [target, current]; current is advanced in place.
        step: ramp per sample (1 / fade length in samples).
    """
    g = mix[1]
    target = mix[0]
    for i in range(out.shape[0]):
        if g < target:
            g = min(target, g + step)
        elif g > target:
            g = max(target, g - step)
        d = dry[i]
        out[i] = d + (wet[i] - d) * g
    mix[1] = g


@njit(nogil=True, fastmath=True, cache=True)
def delay_through(x, out, line, pos):
    """out = x delayed by len(line) samples, through the ring ``line`` (state) at ``pos[0]``.

    out may alias x. Keeps a bypassed pedal's path as late as the engaged pedal (latency
    compensation), so the bypass crossfade mixes aligned signals and the board's latency does
    not jump when a pedal is bypassed.
    """
    n = line.shape[0]
    p = pos[0]
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = line[p]
        line[p] = v
        p += 1
        if p == n:
            p = 0
    pos[0] = p


_NUMBERS = (int, float, np.number, np.bool_)


class StateSync:
    """How to make ``dst``, a deep copy of ``src`` made earlier, hold ``src``'s state as it is then.

    Built once by walking attributes, lists, tuples and dicts (GUI or engine main thread); ``run``
    copies every array into place and rebinds every number (audio thread, at a rack swap: a flat
    loop, no walk, no new arrays unless a shape changed). ``src`` must not rebind its arrays in
    between, which the pedals never do while streaming.
    """

    def __init__(self, dst, src):
        self.src = src
        self.arrays: list[tuple[np.ndarray, np.ndarray]] = []
        self.numbers: list[tuple[object, object, object]] = []  # (dst container, key, src container)
        self.resized: list[tuple[object, object, object]] = []  # arrays whose shape changed: copied anew
        self._walk(dst, src, set())

    def _walk(self, dst, src, seen) -> None:
        if id(dst) in seen:
            return
        seen.add(id(dst))
        if isinstance(dst, dict):
            items = [(k, dst[k], v) for k, v in src.items() if k in dst]
        elif isinstance(dst, (list, tuple)):
            items = list(enumerate(zip(dst, src)))
            items = [(i, d, v) for i, (d, v) in items]
        elif hasattr(dst, "__dict__"):
            items = [(k, d, getattr(src, k)) for k, d in vars(dst).items() if hasattr(src, k)]
        else:
            return
        mutable = not isinstance(dst, tuple)
        for key, d, v in items:
            if isinstance(d, np.ndarray):
                if d is v:
                    continue
                if d.shape == v.shape and d.dtype == v.dtype:
                    self.arrays.append((d, v))
                elif mutable:
                    self.resized.append((dst, key, src))
            elif isinstance(v, _NUMBERS):
                if mutable:
                    self.numbers.append((dst, key, src))
            elif not isinstance(v, (str, bytes, type(None), pathlib.PurePath)):
                self._walk(d, v, seen)

    def run(self) -> None:
        for d, v in self.arrays:
            np.copyto(d, v)
        for dst, key, src in self.numbers:
            _set(dst, key, _get(src, key))
        for dst, key, src in self.resized:
            _set(dst, key, _get(src, key).copy())


def _get(container, key):
    return container[key] if isinstance(container, (dict, list, tuple)) else getattr(container, key)


def _set(container, key, value) -> None:
    if isinstance(container, (dict, list)):
        container[key] = value
    else:
        setattr(container, key, value)


@dataclasses.dataclass(eq=False)
class Slot:
    """One pedal on the board with its bypass state and the single-pedal chain that runs it at the
    board's rate (resampling if the pedal's own rate differs)."""
    pedal: Pedal
    chain: Chain
    model_path: str | None = None
    # [target, current] wet mix: 1 = engaged, 0 = bypassed. GUI writes [0], audio thread ramps [1].
    mix: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(2, np.float32))
    # Names this slot to an engine in another process, which keeps its own copy of the pedal.
    id: int = dataclasses.field(default_factory=lambda: next(_slot_ids))

    def __post_init__(self):
        # The dry path's delay line: as long as the pedal's latency at the board rate.
        self.dry_delay = np.zeros(self.chain.latency_samples, np.float32)
        self.dry_delay_pos = np.zeros(1, np.int64)

    @property
    def name(self) -> str:
        return self.pedal.name

    @property
    def bypassed(self) -> bool:
        return bool(self.mix[0] == 0.0)

    @property
    def latency_samples(self) -> int:
        return self.chain.latency_samples


class Rack:
    """What the audio callback runs: slots in order, each crossfaded between dry and wet.

    A fully bypassed slot is skipped (its pedal keeps its state and fades back in); its dry path is
    delayed by the pedal's latency, so bypass changes neither the timing nor, while it fades,
    mixes two misaligned copies (a comb filter).
    ``cpu_s[i]`` holds the seconds slot i took in the last block (written on the audio thread,
    read by the GUI); ``cpu_s`` may be given (a view of the engine's shared arrays).
    ``generation`` tells racks apart: the engine publishes the one it runs.
    """

    def __init__(self, slots: list[Slot], sample_rate: int, max_block: int = MAX_BLOCK, cpu_s=None):
        self.slots = tuple(slots)
        self.sample_rate = sample_rate
        self.max_block = max_block
        self.generation = next(_rack_generations)
        self.by_id = {s.id: s for s in self.slots}
        # Per slot, a StateSync from the running rack's copy of it (``plan_sync``); None: this rack
        # shares pedals with the running one, and the engine fades one out and the other in.
        self.sync_plans: list | None = None
        self.cpu_s = np.zeros(len(self.slots), np.float64) if cpu_s is None else cpu_s
        self._dry = np.zeros(max_block, np.float32)
        self._step = np.float32(1.0 / max(1.0, BYPASS_FADE_MS * 1e-3 * sample_rate))
        self.latency_samples = sum(s.latency_samples for s in self.slots)

    def plan_sync(self, running: "Rack") -> None:
        """Prepare to take over from ``running`` with a crossfade: this rack's slots are copies of
        running's (same ids, other objects) or new. Engine main thread; ``sync_from`` runs it."""
        self.sync_plans = [StateSync(s, running.by_id[s.id]) if running.by_id.get(s.id) not in (None, s) else None
                           for s in self.slots]

    def sync_from(self, running: "Rack") -> bool:
        """Give every copy the state of its running pedal now; False (nothing copied) unless every
        slot that runs in ``running`` has a plan made from that very pedal. Audio thread."""
        if self.sync_plans is None:
            return False
        live = running.by_id
        for slot, plan in zip(self.slots, self.sync_plans):
            if slot.id in live and (plan is None or plan.src is not live[slot.id]):
                return False
        for slot, plan in zip(self.slots, self.sync_plans):
            if slot.id in live:
                plan.run()
        return True

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Run x (T,) float32 through the slots into out (T,) float32, T <= max_block. Audio thread."""
        n = x.shape[0]
        out[:] = x
        dry = self._dry[:n]
        clock = time.perf_counter
        for i, slot in enumerate(self.slots):
            mix = slot.mix
            delayed = slot.dry_delay.shape[0] > 0
            if mix[0] == 0.0 and mix[1] == 0.0:
                if delayed:
                    delay_through(out, out, slot.dry_delay, slot.dry_delay_pos)
                self.cpu_s[i] = 0.0
                continue
            t0 = clock()
            if delayed:  # also while engaged: the line holds the recent input for a bypass
                delay_through(out, dry, slot.dry_delay, slot.dry_delay_pos)
            else:
                dry[:] = out
            slot.chain.process(out, out)
            if mix[0] != 1.0 or mix[1] != 1.0:
                crossfade(dry, out, out, mix, self._step)
            self.cpu_s[i] = clock() - t0


class Board:
    """The pedals on the board, in signal order, at one board rate (the audio device's rate).

    Every change that alters the pedal list bumps ``version``; the GUI then hands
    ``rack()`` to the engine.
    """

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = int(sample_rate)
        self.slots: list[Slot] = []
        self.version = 0

    # ---- building ----
    @staticmethod
    def available() -> list[str]:
        return [cls.name for cls in list_pedals()]

    def make_slot(self, name: str, model_path: str | None = None) -> Slot:
        """Load a pedal into a slot (not yet on the board). Raises ValueError/ModelFileError."""
        pedal = load_pedal(name, model_path=model_path)
        return Slot(pedal, Chain([pedal], sample_rate=self.sample_rate),
                    None if model_path is None else str(model_path))

    @classmethod
    def default(cls, sample_rate: int = 48000, order=DEFAULT_ORDER) -> tuple["Board", list[str]]:
        """The default board: the pedals of ``order`` that are registered and load.

        Returns:
            (board, messages) where messages say which pedals were skipped and why.
        """
        board, messages = cls(sample_rate), []
        known = set(cls.available())
        for name in order:
            if name not in known:
                messages.append(f"{name}: not available in this build, left off the board")
                continue
            try:
                board.slots.append(board.make_slot(name))
            except (ModelFileError, ValueError, OSError) as exc:
                messages.append(f"{name}: left off the board: {exc}")
        return board, messages

    def add(self, name: str, model_path: str | None = None, index: int | None = None) -> Slot:
        slot = self.make_slot(name, model_path)
        self.slots.insert(len(self.slots) if index is None else index, slot)
        self.version += 1
        return slot

    def remove(self, index: int) -> Slot:
        slot = self.slots.pop(index)
        self.version += 1
        return slot

    def move(self, src: int, dst: int) -> None:
        """Move the slot at src so that it ends up at dst."""
        n = len(self.slots)
        if not (0 <= src < n and 0 <= dst < n):
            raise IndexError(f"move({src}, {dst}) outside a board of {n} pedals")
        if src != dst:
            self.slots.insert(dst, self.slots.pop(src))
            self.version += 1

    def set_bypass(self, index: int, bypassed: bool) -> None:
        self.slots[index].mix[0] = 0.0 if bypassed else 1.0

    def order(self) -> list[str]:
        return [s.name for s in self.slots]

    def rack(self, max_block: int = MAX_BLOCK) -> Rack:
        return Rack(self.slots, self.sample_rate, max_block)

    @property
    def latency_samples(self) -> int:
        return sum(s.latency_samples for s in self.slots)  # bypassed slots delay as much

    # ---- presets ----
    def to_preset(self) -> dict:
        """The board as a JSON-able dict keyed by pedal and knob names."""
        return {"format": PRESET_FORMAT, "version": PRESET_VERSION,
                "pedals": [{"name": s.name, "bypassed": s.bypassed, "model": s.model_path,
                            "knobs": s.pedal.knob_values()} for s in self.slots]}

    def save(self, path) -> None:
        path = pathlib.Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_preset(), indent=2) + "\n")
        tmp.replace(path)

    def slots_from_preset(self, preset) -> list[Slot]:
        """Build the slots a preset describes without touching this board.

        Raises:
            PresetError: with a one-line message, for anything wrong in the preset.
        """
        if not isinstance(preset, dict) or preset.get("format") != PRESET_FORMAT:
            raise PresetError("not a knobnet board preset (no \"format\": \"knobnet-board\")")
        version = preset.get("version")
        if version != PRESET_VERSION:
            raise PresetError(f"preset version {version!r} is not supported (this knobnet reads version "
                              f"{PRESET_VERSION})")
        pedals = preset.get("pedals")
        if not isinstance(pedals, list):
            raise PresetError("preset has no \"pedals\" list")
        slots = []
        for i, entry in enumerate(pedals):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise PresetError(f"preset pedal #{i + 1} has no name")
            knobs = entry.get("knobs", {})
            if not isinstance(knobs, dict):
                raise PresetError(f"preset pedal #{i + 1} ({entry['name']}): \"knobs\" is not an object")
            try:
                slot = self.make_slot(entry["name"], entry.get("model"))
                slot.pedal.set_knobs(**knobs)
            except (ModelFileError, ValueError, OSError, TypeError) as exc:
                raise PresetError(f"preset pedal #{i + 1} ({entry['name']}): {exc}") from None
            if entry.get("bypassed", False):
                slot.mix[:] = 0.0
            slots.append(slot)
        return slots

    def load_preset(self, path) -> None:
        """Replace the board with a preset file; on any error the board is left as it was.

        Raises:
            PresetError: one-line message naming the file and what is wrong.
        """
        path = pathlib.Path(path)
        try:
            preset = json.loads(path.read_text())
        except OSError as exc:
            raise PresetError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PresetError(f"{path}: not valid JSON ({exc})") from None
        try:
            slots = self.slots_from_preset(preset)
        except PresetError as exc:
            raise PresetError(f"{path}: {exc}") from None
        self.slots = slots
        self.version += 1
