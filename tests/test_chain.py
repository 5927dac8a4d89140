"""Chain: order, moves, and streaming resampling between pedal rates."""
import numpy as np
import pytest

from effects import Chain, Knob, Pedal
from effects.resample import RateAdapter, StreamResampler


class Gain(Pedal):
    """A memoryless test pedal: y = gain * x (plus a sample counter to expose its rate)."""
    name = "gain"
    knobs = (Knob("gain", 0.0, 4.0, 1.0),)

    def __init__(self, sample_rate=48000, model_path=None):
        self.sample_rate = sample_rate
        super().__init__()

    def _output_gain(self, values):
        return values[0]

    def _run(self, x, out):
        out[:] = x

    def _reset_state(self):
        pass


def sine(freq_hz, rate, seconds=0.5):
    return np.sin(2 * np.pi * freq_hz * np.arange(int(rate * seconds)) / rate).astype(np.float32)


def test_chain_runs_pedals_in_order_and_move_reorders():
    a, b, c = Gain(), Gain(), Gain()
    chain = Chain([a, b, c])
    chain.move(0, 2)
    assert chain.pedals == [b, c, a]
    chain.move(2, 0)
    assert chain.pedals == [a, b, c]
    with pytest.raises(IndexError):
        chain.move(0, 3)
    a.set_knobs(gain=2.0)
    b.set_knobs(gain=0.5)
    x = sine(440, 48000, 0.01)
    np.testing.assert_allclose(chain.process(x), x * 2.0 * 0.5 * 1.0, atol=1e-6)
    np.testing.assert_array_equal(Chain([]).process(x), x)


@pytest.mark.parametrize("rate_in, rate_out", [(48000, 44100), (44100, 48000), (48000, 96000)])
def test_stream_resampler_is_exact_on_a_passband_sine_and_block_invariant(rate_in, rate_out):
    x = sine(1000, rate_in)
    r = StreamResampler(rate_in, rate_out)
    whole = r.push(x).copy()
    r.reset()
    pieces = np.concatenate([r.push(x[i:i + 7]).copy() for i in range(0, len(x), 7)])
    np.testing.assert_array_equal(pieces, whole)
    ideal = sine(1000, rate_out)[:len(whole)]
    assert np.abs(whole[100:-100] - ideal[100:-100]).max() < 1e-4  # output k sits at input time k/rate_out


def test_stream_resampler_rejects_what_would_alias():
    """A 23 kHz tone cannot exist at 44.1 kHz: it must come out at least 80 dB down."""
    r = StreamResampler(48000, 44100)
    y = r.push(sine(23000, 48000)).copy()
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 1e-4


def test_chain_of_mixed_rates_delays_by_its_latency_and_is_block_invariant():
    chain = Chain([Gain(48000), Gain(44100)], sample_rate=48000)
    lat = chain.latency_samples
    assert lat == RateAdapter(48000, 44100).latency_samples
    x = sine(1000, 48000)
    whole = chain.process(x)
    # Output = the input resampled there and back, lat samples late; passband error below -80 dB.
    assert np.abs(whole[lat + 200:] - x[200:len(x) - lat]).max() < 1e-4
    for block_size in (1, 7, 128, 4096):
        chain.reset()
        streamed = np.concatenate([chain.process(x[i:i + block_size]) for i in range(0, len(x), block_size)])
        np.testing.assert_allclose(streamed, whole, atol=1e-6)
