"""Training conditioned models from paired recordings. Runs on a training thread or process,
never on the audio thread; every trained model streams through the kernels in ``effects.kernels``."""
