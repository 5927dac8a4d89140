"""Shared fixtures: test signals, the shared-data location, and a pedal factory per registered pedal."""
import numpy as np
import pytest

from effects import ModelFileError, list_pedals, load_pedal
from effects.modelfile import SHARED_DIR

SHARED_REASON = f"needs the shared models and data at {SHARED_DIR} (absent on this machine)"
requires_shared = pytest.mark.skipif(not SHARED_DIR.is_dir(), reason=SHARED_REASON)


def guitar_like(sample_rate: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """Decaying plucked partials plus a little noise: a deterministic guitar-like test signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = np.zeros_like(t)
    for f0, start in ((110.0, 0.0), (164.8, 0.15), (246.9, 0.3)):
        env = np.where(t >= start, np.exp(-(t - start) * 6.0), 0.0)
        for k in range(1, 8):
            x += env * np.sin(2 * np.pi * f0 * k * (t - start)) * (0.5 / k)
    x += 0.005 * rng.standard_normal(t.size)
    return (0.4 * x / np.abs(x).max()).astype(np.float32)


def _make(name):
    def make():
        try:
            return load_pedal(name)
        except ModelFileError as exc:
            pytest.skip(f"{name}: {exc}")
    return make


@pytest.fixture(params=[cls.name for cls in list_pedals()])
def make_pedal(request):
    """A factory of fresh pedals with default weights, one param per registered pedal."""
    return _make(request.param)
