"""Marshall JVM 410H (OD1 channel) as DDSP stages, trained by knobnet on real recordings.

Runs on the audio thread (``_run``, and ``_configure`` at control ticks while a knob moves);
loading, ``reset`` (it settles the amp: about 2 ms) and ``info``/``stages`` run on the GUI/CLI or
engine thread. The model and its knob mapping are
in ``effects.ddsp.amp`` (spec section 7); the shipped weights and how they were trained are
described in resources/jvm/MODEL_CARD.md. The recordings hold gain 5 and one master setting:
gain and master act through constructed gains (see ``effects.ddsp.amp``). Those move the amp's
idle state, and the output DC blocker turns the move into a low bump (0.088 peak for gain and master
5 -> 10 in silence): the pedal subtracts what the amp plays on silence (``effects.rest.SilentTwin``),
so a knob turned in silence is silent.
"""
from __future__ import annotations

import numpy as np

from effects.ddsp import amp, stream
from effects.modelfile import RESOURCES_DIR
from effects.pedal import Knob, ModelFileError, Pedal
from effects.rest import SilentTwin

DEFAULT_WEIGHTS = RESOURCES_DIR / "jvm" / "jvm_ddsp.npz"


class JVM(Pedal):
    name = "jvm"
    description = "Marshall JVM 410H OD1 amp (DDSP stages trained on real JVM recordings)"
    sample_rate = 44100
    latency_samples = 0
    # A knob move redesigns the tone stack's 3 biquads and 2 gains (AmpStream.configure: 0.22 ms on
    # this CPU, quiet; the whole 45-biquad design took 0.56 ms). While a knob moves that happens
    # every 128 samples (2.9 ms; 17 steps over a full-range 50 ms ramp), which keeps a moving knob
    # well inside a 128-sample block's budget. Output gain still ramps per sample.
    control_period = 128
    knobs = tuple(Knob(k, 0.0, 10.0, 5.0) for k in amp.KNOBS)

    def __init__(self, model_path=None):
        self.model_path = DEFAULT_WEIGHTS if model_path is None else model_path
        params, sample_rate, self.meta = stream.load(self.model_path)
        if sample_rate != self.sample_rate:
            raise ModelFileError(f"{self.model_path}: trained at {sample_rate:g} Hz, the JVM pedal runs at "
                                 f"{self.sample_rate} Hz")
        self.amp = stream.AmpStream(params, sample_rate, self.meta["oversampled"])
        twin = stream.AmpStream(params, sample_rate, self.meta["oversampled"])
        twin.sos, twin.gains = self.amp.sos, self.amp.gains  # configure redesigns both in place
        self._silent = SilentTwin(self.amp, twin, horizon=self.amp.settle_samples)
        super().__init__()
        self.reset()

    def _configure(self, values):
        self.amp.configure(values)

    def _run(self, x, out):
        self.amp.run(x, out)

    def _settle(self):
        self.amp.settle()

    def _reset_state(self):
        self.amp.reset()

    def stages(self, knobs: dict | None = None, **options) -> list:
        """Inspection curves at the given panel knobs (default: the current targets).

        See ``effects.ddsp.inspect.stages``; never touches the audio thread's state.
        """
        from effects.ddsp import inspect
        values = dict(self.knob_values(), **(knobs or {}))
        return inspect.stages(self.amp.params, np.array([values[k] for k in amp.KNOBS]), self.sample_rate,
                              oversampled=self.amp.oversampled, **options)

    def info(self) -> dict:
        return {"params": amp.count_params(), "ops_per_sample": self.amp.ops_per_sample,
                "model": "DDSP amp (4 WH preamp, tone stack, push-pull power amp, output transformer"
                         + (f"; GRU1s {', '.join(str(k + 1) for k in self.amp.oversampled)} of 7 at twice the rate)"
                            if self.amp.oversampled else ")"),
                "weights": str(self.model_path)}
