"""Boss OD-3 overdrive: a conditioned GRU trained on real OD-3 recordings.

Runs on the audio thread (``_run``, ``_configure`` at control ticks); loading and ``reset`` (it
settles the GRU at the knobs: a few milliseconds) run on the GUI/CLI or engine thread.
The model ([pnfx] StaticHyper-GRU-32, spec sections 2.3 and 5) was trained with
drive and tone on a 0..4 scale; the panel's 0..10 maps linearly onto it (0 -> 0, 10 -> 4), and
the model sees c = v/2 - 1. Level is not modelled: it is an output gain with an audio taper,
unity at its default of 5. The real pedal's output is AC-coupled; the model's rests at a DC offset
that moves with drive and tone (-0.009 to +0.003), so the pedal subtracts what the model plays on
silence (``effects.rest.SilentTwin``) and rests at zero.
"""
from __future__ import annotations

import numpy as np

from effects.modelfile import RESOURCES_DIR, shared_path
from effects.pedal import Knob, ModelFileError, Pedal
from effects.recurrent import load_conditioned_gru
from effects.rest import SilentTwin

SHIPPED_WEIGHTS = RESOURCES_DIR / "od3" / "od3.npz"
SHARED_CHECKPOINT = ("models", "od3-pyneuralfx", "statichyper_gru_32.pt")
MODEL_SCALE = 4.0 / 10.0  # panel 0..10 -> training scale 0..4


def level_gain(level: float) -> float:
    """Output gain of the level knob: (level/5)^2, i.e. mute at 0, unity at 5, +12 dB at 10."""
    return (level / 5.0) ** 2


class OD3(Pedal):
    name = "od3"
    description = "Boss OD-3 overdrive (StaticHyper-GRU-32 trained on real OD-3 recordings)"
    sample_rate = 48000
    latency_samples = 0
    knobs = (
        Knob("drive", 0.0, 10.0, 5.0),
        Knob("tone", 0.0, 10.0, 5.0),
        Knob("level", 0.0, 10.0, 5.0),
    )

    def __init__(self, model_path=None):
        """model_path: a knobnet conditioned-GRU file (any conditioning) or the pyneuralfx
        StaticHyper-GRU-32 checkpoint; default: knobnet's shipped student, else the shared teacher."""
        if model_path is None:
            model_path = SHIPPED_WEIGHTS if SHIPPED_WEIGHTS.is_file() else shared_path(*SHARED_CHECKPOINT)
            if not model_path.is_file():
                raise ModelFileError(f"no OD-3 weights: {SHIPPED_WEIGHTS} is missing; pass model_path=PATH "
                                     "(CLI: --model od3=PATH)")
        self.model_path = model_path
        self.model, self.model_meta = load_conditioned_gru(model_path, num_conds=2)
        self.stream = self.model.stream()
        twin = self.model.stream()
        twin.weights = self.stream.weights  # _configure folds the knobs into both
        self._silent = SilentTwin(self.stream, twin, horizon=self.stream.settle_samples)
        self._cond = np.zeros(2, np.float32)
        super().__init__()
        self.reset()

    def conditioning(self, drive: float, tone: float) -> np.ndarray:
        """Normalised model conditions c = [d, t]/2 - 1 for panel drive and tone."""
        return np.array([drive, tone], np.float32) * np.float32(MODEL_SCALE / 2) - np.float32(1.0)

    def _configure(self, values):
        self._cond[0] = values[0] * (MODEL_SCALE / 2) - 1.0
        self._cond[1] = values[1] * (MODEL_SCALE / 2) - 1.0
        self.model.weights_into(self._cond, self.stream.weights)

    def _output_gain(self, values):
        return level_gain(values[2])

    def _run(self, x, out):
        self.stream.run(x, out)

    def _settle(self):
        self.stream.settle()

    def _reset_state(self):
        self.stream.reset()

    def info(self) -> dict:
        return {"params": self.model.params, "ops_per_sample": self.model.ops_per_sample,
                "model": f"{self.model.kind}-{getattr(self.model, 'cell', 'gru').upper()}-{self.model.hidden_size}", "weights": str(self.model_path)}
