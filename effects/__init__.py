"""knobnet effects: conditioned neural models of real gear, streamed block by block.

No Qt here. See ``effects.pedal`` for the threading contract.
"""
from effects.pedal import Chain, Knob, ModelFileError, Pedal
from effects.registry import list_pedals, load_pedal

__all__ = ["Chain", "Knob", "ModelFileError", "Pedal", "list_pedals", "load_pedal"]
