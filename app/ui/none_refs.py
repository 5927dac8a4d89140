"""Guard against a PySide6 refcount bug that aborts the app after ~70,000 Qt calls. GUI thread.

With PySide6 6.12.0 on Python 3.11, every call of a C++ method that returns void drops a
reference to ``None`` it never took (as if None were immortal, which it is only from Python 3.12
on); some bool paths do the same to ``True``/``False``. Once a count reaches zero the interpreter
aborts ("Fatal Python error: none_dealloc: deallocating None", or bool_dealloc). A board
redrawing at 30 fps makes thousands of such calls per second, so the app died within a minute.
PySide6 6.11.3 does not have the bug.

``top_up()`` puts the lost references back: when the count of None, True or False falls below
``FLOOR`` it adds ``FLOOR``. It runs at import and on every GUI frame; it does nothing where the
bug is absent (``LEAKS`` is measured, not guessed from version numbers). Remove this module once
the project pins a PySide6 without the bug.
"""
from __future__ import annotations

import ctypes
import sys

FLOOR = 1 << 22  # ~4M references: minutes of redrawing between top-ups


def _leaks_none() -> bool:
    from PySide6 import QtCore
    point = QtCore.QPointF()
    before = sys.getrefcount(None)
    for _ in range(100):
        point.setX(1.0)  # returns void
    return sys.getrefcount(None) <= before - 100


LEAKS = sys.version_info < (3, 12) and _leaks_none()


def top_up() -> None:
    """Restore lost references (under the GIL, like every other change to a count)."""
    if not LEAKS:
        return
    for singleton in (None, True, False):
        if sys.getrefcount(singleton) < FLOOR:
            ctypes.c_ssize_t.from_address(id(singleton)).value += FLOOR


top_up()
