"""Contract every registered pedal keeps: block-size invariance, reset, silence, smoothing, bad input."""
import warnings

import numpy as np
import pytest

from tests.conftest import guitar_like


def stream(pedal, x, block_size):
    return np.concatenate([pedal.process(x[i:i + block_size]) for i in range(0, len(x), block_size)]
                          or [np.zeros(0, np.float32)])


@pytest.mark.parametrize("block_size", [1, 7, 64, 128, 4096])
def test_output_does_not_depend_on_block_size(make_pedal, block_size):
    pedal = make_pedal()
    x = guitar_like(pedal.sample_rate, 0.25)
    whole = pedal.process(x)
    pedal.reset()
    np.testing.assert_allclose(stream(pedal, x, block_size), whole, atol=1e-5)


def test_block_size_invariance_holds_while_knobs_move(make_pedal):
    """A knob change at a fixed sample position ramps identically however the stream is cut."""
    x = guitar_like(48000, 0.25)
    outs = []
    for block_size in (1, 7, 128, 4096):
        pedal = make_pedal()
        pedal.process(x[:1000])
        knob = pedal.knobs[0]
        pedal.set_knobs(**{knob.name: knob.maximum if knob.default != knob.maximum else knob.minimum})
        outs.append(stream(pedal, x[1000:], block_size))
    for other in outs[1:]:
        np.testing.assert_allclose(other, outs[0], atol=1e-5)


def test_reset_gives_the_output_of_a_fresh_pedal(make_pedal):
    pedal = make_pedal()
    x = guitar_like(pedal.sample_rate, 0.2)
    settings = {k.name: k.minimum + 0.3 * (k.maximum - k.minimum) if not k.choices else k.choices[-1]
                for k in pedal.knobs}
    pedal.set_knobs(**settings)
    pedal.process(x[::-1].copy())
    pedal.reset()
    fresh = make_pedal()
    fresh.set_knobs(**settings)
    fresh.reset()  # at rest at these knobs, as load_pedal(name, **settings) gives it
    np.testing.assert_allclose(pedal.process(x), fresh.process(x), atol=1e-6)
    assert pedal.knob_values() == fresh.knob_values()


def test_shapes_lengths_zero_and_one(make_pedal):
    pedal = make_pedal()
    assert pedal.process(np.zeros(0, np.float32)).shape == (0,)
    y = pedal.process(np.zeros(1, np.float32))
    assert y.shape == (1,) and y.dtype == np.float32
    with pytest.raises(ValueError, match="1-D"):
        pedal.process(np.zeros((2, 16), np.float32))


def test_silence_in_gives_silence_out_while_knobs_move(make_pedal):
    """The gear is AC-coupled: in silence a pedal plays nothing when it is made, while any knob sweeps
    its range, and after a reset: below 1e-5 (-100 dBFS). (A trained model rests at a DC offset that moves
    with its knobs; each pedal subtracts it, ``effects.rest.SilentTwin``.)"""
    pedal = make_pedal()
    silence = np.zeros(pedal.sample_rate // 2, np.float32)
    assert np.abs(pedal.process(silence)).max() < 1e-5
    for knob in pedal.knobs:
        start = pedal.knob_values()[knob.name]
        for value in (knob.maximum, knob.minimum, start):
            pedal.set_knobs(**{knob.name: value})
            assert np.abs(pedal.process(silence)).max() < 1e-5, (knob.name, value)
    pedal.process(guitar_like(pedal.sample_rate, 0.25))
    pedal.reset()
    assert np.abs(pedal.process(silence)).max() < 1e-5


def test_pedals_before_the_amp_turned_in_silence_do_not_thump():
    """The amp amplifies any step in the DC before it: the default board (OD-3 > LA-2A > JVM at 48 kHz)
    played 0.15 peak when it started and 0.26 when the OD-3's tone was turned in silence, before the
    pedals subtracted their DC at rest. Every knob of every pedal now sweeps in silence below -80 dBFS."""
    from effects import Chain, load_pedal
    pedals = [load_pedal(name) for name in ("od3", "la2a", "jvm")]
    chain = Chain(pedals, sample_rate=48000)
    chain.reset()
    silence = np.zeros(128, np.float32)

    def play(blocks=150):
        return max(np.abs(chain.process(silence)).max() for _ in range(blocks))

    assert play() < 1e-4
    for pedal in pedals:
        for knob in pedal.knobs:
            start = pedal.knob_values()[knob.name]
            for value in (knob.maximum, knob.minimum, start):
                pedal.set_knobs(**{knob.name: value})
                assert play() < 1e-4, (pedal.name, knob.name, value)


def test_unknown_or_out_of_range_knob_is_refused_and_nothing_changes(make_pedal):
    pedal = make_pedal()
    before = pedal.knob_values()
    k = pedal.knobs[0]
    with pytest.raises(ValueError, match="no knob 'volume_x'"):
        pedal.set_knobs(**{k.name: k.default, "volume_x": 1})
    with pytest.raises(ValueError, match=k.name):
        pedal.set_knobs(**{k.name: k.maximum + 1})
    with pytest.raises(ValueError, match=k.name):
        pedal.set_knobs(**{k.name: float("nan")})
    assert pedal.knob_values() == before


def test_knob_smoothing_has_no_step_larger_than_the_ramp_allows(make_pedal):
    """A full-range knob jump reaches the model as a ramp over smoothing_ms, one tick at a time."""
    pedal = make_pedal()
    x = guitar_like(pedal.sample_rate, 0.3)
    pedal.process(x[:64])
    for knob in pedal.knobs:
        i = pedal.knobs.index(knob)
        start = pedal.current_knob_values()[knob.name]
        end = knob.minimum if start > (knob.minimum + knob.maximum) / 2 else knob.maximum
        pedal.set_knobs(**{knob.name: end})
        allowed = (knob.maximum - knob.minimum) * pedal.control_period / (pedal.smoothing_ms * 1e-3 * pedal.sample_rate)
        seen = [start]
        pos = 64
        while seen[-1] != end:
            pedal.process(x[pos % len(x):pos % len(x) + pedal.control_period])
            pos += pedal.control_period
            seen.append(pedal.current_knob_values()[knob.name])
            assert len(seen) < 10_000
        steps = np.abs(np.diff(seen))
        assert steps.max() <= allowed + 1e-9, knob.name
        expected_ticks = int(np.ceil(abs(end - start) / allowed))
        assert len(seen) - 1 == expected_ticks, knob.name
        assert pedal._value[i] == end


def test_nonfinite_input_becomes_silence_and_resets_state_with_one_warning(make_pedal):
    pedal = make_pedal()
    x = guitar_like(pedal.sample_rate, 0.1)
    pedal.process(x)  # some history, which the bad block must clear
    bad = x.copy()
    bad[10] = np.nan
    bad[20] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        y = pedal.process(bad)
    clean = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    np.testing.assert_allclose(y, make_pedal().process(clean), atol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pedal.process(bad)
    assert not caught, "warned more than once"
