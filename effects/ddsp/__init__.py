"""DDSP amp stages: one model with a differentiable face (training) and a streaming face (playing).

Modules: ``biquad`` (RBJ coefficients, frequency-sampled training filters, streaming IIR),
``gru1`` (the 1-unit GRU nonlinearity), ``amp`` (the torch model and its knob controllers),
``stream`` (the streaming twin), ``inspect`` (curves for the GUI), ``train`` (the JVM training
script). Which thread each runs on is said in its own docstring.
"""
