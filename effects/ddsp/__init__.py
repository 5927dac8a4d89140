"""DDSP amp stages: one model with a differentiable face (training) and a streaming face (playing).

Modules: ``biquad`` (RBJ coefficients, frequency-sampled training filters, streaming IIR),
``gru1`` (the 1-unit GRU nonlinearity), ``amp`` (the torch model, its knob controllers and the
``knobnet train`` model type ``ddsp``), ``tonestack`` (the JVM's tone-stack circuit that the tone
stack is fitted to), ``stream`` (the streaming twin), ``inspect`` (curves for the GUI), ``dataset``
(the JVM recordings as a training dataset folder). Which thread each runs
on is said in its own docstring.
"""
