"""The pedals knobnet knows by name. Runs on the GUI/CLI thread."""
from __future__ import annotations

from effects.pedal import Pedal


def _pedal_classes() -> dict[str, type[Pedal]]:
    from effects.jvm import JVM
    from effects.la2a import LA2A
    from effects.od3 import OD3
    return {cls.name: cls for cls in (OD3, LA2A, JVM)}  # the default board's order


def list_pedals() -> list[type[Pedal]]:
    """Pedal classes in registry order; each has name, description, sample_rate and knobs."""
    return list(_pedal_classes().values())


def load_pedal(name: str, model_path=None, **knobs) -> Pedal:
    """Build a pedal by name, with knobnet's default weights or those in model_path.

    Raises ValueError for an unknown pedal or knob, ModelFileError for a bad model file.
    """
    classes = _pedal_classes()
    if name not in classes:
        raise ValueError(f"unknown pedal '{name}' (known: {', '.join(classes)})")
    pedal = classes[name](model_path=model_path)
    if knobs:
        pedal.set_knobs(**knobs)
        pedal.reset()  # to rest at these knobs (the JVM's idle state depends on them)
    return pedal
