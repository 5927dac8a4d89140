"""Streaming sample-rate conversion so pedals of different rates can share one chain.

Runs on the audio thread (``StreamResampler.push``, ``RateAdapter.process``); construction runs on
the GUI/CLI thread. A windowed-sinc polyphase interpolator (Kaiser, beta 8.6, 64 taps per phase,
cut-off at 0.85 of the lower Nyquist frequency) computes every output sample from the same input
samples however the stream is cut into blocks, so a chain with resampling stays block-size invariant.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

HALF_TAPS = 32
KAISER_BETA = 8.6
CUTOFF = 0.85  # of the lower of the two Nyquist frequencies


def polyphase_table(rate_in: int, rate_out: int, half_taps: int = HALF_TAPS) -> tuple[np.ndarray, int, int]:
    """Interpolation taps for every fractional position p/up, p = 0..up-1.

    Output k sits at input position k*down/up = q + p/up and is sum_m table[p, m] x[q - K + 1 + m].

    Returns:
        (table (up, 2K) float32, up, down).
    """
    g = math.gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    fc = CUTOFF * min(1.0, rate_out / rate_in)  # cut-off as a fraction of the input Nyquist
    frac = np.arange(up)[:, None] / up
    m = np.arange(2 * half_taps)[None, :]
    t = frac + half_taps - 1 - m  # distance in input samples from each tap to the output position
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / half_taps) ** 2, 0, None))) / np.i0(KAISER_BETA)
    table = fc * np.sinc(fc * t) * window
    table /= table.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    return table.astype(np.float32), up, down


@njit(nogil=True, fastmath=True, cache=True)
def _resample_kernel(buf, n_buf, table, up, down, next_num, out):
    """Produce every output whose taps lie in buf[:n_buf]; return (count, next_num, consumed).

    next_num is the next output's position in units of 1/up input samples, relative to buf[0].
    consumed is how many leading samples of buf no later output needs.
    """
    taps = table.shape[1]
    half = taps // 2
    count = 0
    while True:
        q = next_num // up
        if q + half >= n_buf or count >= out.shape[0]:
            break
        p = next_num - q * up
        start = q - half + 1
        acc = np.float32(0.0)
        for m in range(taps):
            acc += table[p, m] * buf[start + m]
        out[count] = acc
        count += 1
        next_num += down
    q = next_num // up
    consumed = max(0, q - half + 1)
    return count, next_num - consumed * up, consumed


class StreamResampler:
    """Converts a stream from rate_in to rate_out block by block, with carried state."""

    def __init__(self, rate_in: int, rate_out: int, half_taps: int = HALF_TAPS):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.table, self.up, self.down = polyphase_table(rate_in, rate_out, half_taps)
        self.half_taps = half_taps
        self._buf = np.zeros(4 * half_taps + 1024, np.float32)
        self._out = np.zeros(2048, np.float32)
        self.reset()

    def reset(self) -> None:
        # Start with K-1 zeros of history so that output 0 sits exactly on input sample 0.
        self._n = self.half_taps - 1
        self._buf[:self._n] = 0.0
        self._next_num = self._n * self.up

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed input samples; return the output samples they complete (a view, valid until next push)."""
        n = x.shape[0]
        need = self._n + n
        if need > self._buf.shape[0]:  # a larger block than ever before: grow once
            grown = np.zeros(2 * need, np.float32)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        max_out = (need * self.up) // self.down + 2
        if max_out > self._out.shape[0]:
            self._out = np.zeros(2 * max_out, np.float32)
        self._buf[self._n:need] = x
        count, self._next_num, consumed = _resample_kernel(
            self._buf, need, self.table, self.up, self.down, self._next_num, self._out)
        rest = need - consumed
        self._buf[:rest] = self._buf[consumed:need]
        self._n = rest
        return self._out[:count]

    @property
    def max_lag(self) -> float:
        """Input samples an output waits for beyond its own position (the filter's half length)."""
        return float(self.half_taps)


class RateAdapter:
    """Runs a pedal at its own rate inside a chain at another rate, with a fixed latency.

    Chain rate -> pedal rate -> pedal -> chain rate, then a FIFO that holds the output back by
    ``latency_samples`` (at the chain rate) so every call returns exactly as many samples as it got.
    """

    def __init__(self, chain_rate: int, pedal_rate: int):
        self.into = StreamResampler(chain_rate, pedal_rate)
        self.back = StreamResampler(pedal_rate, chain_rate)
        ratio = pedal_rate / chain_rate
        # Output j needs pedal-rate sample floor(j*ratio) + K, which needs chain-rate input
        # floor((floor(j*ratio) + K) / ratio) + K <= j + K/ratio + K + 1.
        self.latency_samples = HALF_TAPS + math.ceil(HALF_TAPS / ratio) + 2
        self._fifo = np.zeros(self.latency_samples + 4096, np.float32)
        self._inner = np.zeros(4096, np.float32)
        self.reset()

    def reset(self) -> None:
        self.into.reset()
        self.back.reset()
        self._fifo[:self.latency_samples] = 0.0
        self._fill = self.latency_samples

    def process(self, pedal, x: np.ndarray, out: np.ndarray) -> None:
        inner = self.into.push(x)
        if inner.shape[0] > self._inner.shape[0]:
            self._inner = np.zeros(2 * inner.shape[0], np.float32)
        processed = pedal.process(inner, self._inner[:inner.shape[0]])
        back = self.back.push(processed)
        need = self._fill + back.shape[0]
        if need > self._fifo.shape[0]:
            grown = np.zeros(2 * need, np.float32)
            grown[:self._fill] = self._fifo[:self._fill]
            self._fifo = grown
        self._fifo[self._fill:need] = back
        n = x.shape[0]
        if need < n:  # cannot happen with latency_samples as derived above; fail loudly if it does
            raise RuntimeError(f"rate adapter underflow ({need} < {n})")
        out[:n] = self._fifo[:n]
        self._fifo[:need - n] = self._fifo[n:need]
        self._fill = need - n
