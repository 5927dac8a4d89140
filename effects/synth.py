"""A synthesized guitar phrase (Karplus-Strong plucked strings) for the bundled demo clip.

Runs on the CLI thread (``python -m effects.synth`` writes resources/demo/phrase.wav). The phrase
is deterministic: a fixed-seed excitation per note, so the same code always writes the same clip.
Karplus-Strong [1]: a noise burst circulating in a delay line of one period, averaged by a
two-point lowpass each pass, decays like a plucked string.

[1] K. Karplus, A. Strong, "Digital Synthesis of Plucked-String and Drum Timbres", CMJ 7(2), 1983.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from numba import njit

from effects.modelfile import RESOURCES_DIR

SAMPLE_RATE = 48000
DEMO_PATH = RESOURCES_DIR / "demo" / "phrase.wav"

# Standard tuning E2 A2 D3 G3 B3 E4, in Hz.
OPEN_STRINGS_HZ = (82.41, 110.0, 146.83, 196.0, 246.94, 329.63)


@njit(cache=True)
def _pluck_kernel(excitation, period_samples, decay, n_out, out):
    """Karplus-Strong loop: y[n] = x[n] + decay * (y[n-P] + y[n-P-1]) / 2 with fractional P ignored."""
    p = period_samples
    for n in range(n_out):
        v = excitation[n] if n < excitation.shape[0] else 0.0
        if n > p:
            v += decay * 0.5 * (out[n - p] + out[n - p - 1])
        out[n] = v


def pluck(freq_hz: float, seconds: float, seed: int, brightness: float = 0.6,
          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One plucked note.

    Args:
        freq_hz: fundamental in Hz (rounded to an integer period plus the averager's half sample).
        seconds: length of the returned note in seconds (it rings until then).
        seed: seed of the noise burst.
        brightness: 0..1, how much of the burst's high end is kept (a one-pole lowpass on it).
    Returns:
        (round(seconds * sample_rate),) float64, peak about 1.
    """
    period = max(2, int(round(sample_rate / freq_hz - 0.5)))
    rng = np.random.default_rng(seed)
    burst = rng.uniform(-1.0, 1.0, period)
    for i in range(1, period):  # soften the pick attack
        burst[i] = brightness * burst[i] + (1.0 - brightness) * burst[i - 1]
    burst -= burst.mean()
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    # Per-period decay so that low and high strings ring for a similar ~1.5 s (-60 dB).
    decay = 10.0 ** (-3.0 / (1.5 * freq_hz))
    _pluck_kernel(burst, period, decay, n, out)
    return out / max(np.abs(out).max(), 1e-9)


def _note_hz(string: int, fret: int) -> float:
    return OPEN_STRINGS_HZ[string] * 2.0 ** (fret / 12.0)


# (start s, [(string, fret)], strum spread s, gain); strings 0 = low E .. 5 = high E.
_CHORDS = {
    "E5": [(0, 0), (1, 2), (2, 2)],
    "A5": [(1, 0), (2, 2), (3, 2)],
    "D5": [(2, 0), (3, 2), (4, 3)],
    "G": [(0, 3), (1, 2), (2, 0), (3, 0), (4, 0), (5, 3)],
    "Em": [(0, 0), (1, 2), (2, 2), (3, 0), (4, 0), (5, 0)],
    "C": [(1, 3), (2, 2), (3, 0), (4, 1), (5, 0)],
}
_RIFF = [(0, 0), (0, 3), (1, 0), (1, 2), (0, 3), (0, 0), (1, 2), (1, 0)]  # E minor pentatonic run


def phrase(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The demo phrase: power chords, a riff, open chords, a final ringing E minor (about 12.5 s).

    Returns:
        (T,) float32 mono at sample_rate, peak 0.5 (-6 dBFS).
    """
    events = []  # (start_s, freq_hz, seconds, seed, gain)
    t, seed = 0.0, 0
    for name in ("E5", "E5", "A5", "E5", "D5", "A5"):
        for k, (s, f) in enumerate(_CHORDS[name]):
            events.append((t + 0.012 * k, _note_hz(s, f), 0.9, seed, 0.7))
            seed += 1
        t += 0.5
    for s, f in _RIFF * 2:
        events.append((t, _note_hz(s, f), 0.45, seed, 0.9))
        seed += 1
        t += 0.22
    for name in ("G", "C", "G", "Em"):
        for k, (s, f) in enumerate(_CHORDS[name]):
            events.append((t + 0.02 * k, _note_hz(s, f), 1.6, seed, 0.45))
            seed += 1
        t += 1.0
    for k, (s, f) in enumerate(_CHORDS["Em"]):
        events.append((t + 0.03 * k, _note_hz(s, f), 3.0, seed, 0.45))
        seed += 1
    total = int(round((t + 3.5) * sample_rate))
    y = np.zeros(total)
    for start_s, hz, seconds, note_seed, gain in events:
        note = pluck(hz, seconds, note_seed, sample_rate=sample_rate)
        # A short fade at the note's end: the next pluck mutes the string.
        fade = min(note.size, int(0.01 * sample_rate))
        note[-fade:] *= np.linspace(1.0, 0.0, fade)
        i = int(round(start_s * sample_rate))
        y[i:i + note.size] += gain * note[:total - i]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def write_demo(path: pathlib.Path = DEMO_PATH) -> pathlib.Path:
    """Write the phrase as a mono 48 kHz 16-bit WAV."""
    import soundfile as sf
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), phrase(), SAMPLE_RATE, subtype="PCM_16")
    return path


if __name__ == "__main__":
    out = write_demo(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_PATH)
    print(f"wrote {out}")
