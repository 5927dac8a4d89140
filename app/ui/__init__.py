"""The pedalboard's Qt widgets. Everything in this package runs on the GUI thread."""
from app.ui import none_refs  # noqa: F401  (guards the app against a PySide6 refcount bug at import)
