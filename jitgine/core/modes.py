"""Which Modules are in eval mode, as a hashable key for traced signatures.

Traced functions include `state()` in their signature, so a function recorded
while a module trained retraces when that module is in eval mode. The key
depends only on the current modes, not on how often they switched: the usual
train epoch -> eval -> train epoch loop comes back to the key it started with
and reuses the compiled step instead of recompiling it every epoch.

Modules are told apart by a serial number given out once per module (never
an `id`, which a new module may inherit from a dead one).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

_next_serial = itertools.count()
_serials: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
_in_eval: set[int] = set()
_key: frozenset[int] = frozenset()


def set_training(module: Any, training: bool) -> None:
    """Record that `module` is now in train (True) or eval (False) mode."""
    global _key
    serial = _serials.get(module)
    if serial is None:
        serial = _serials[module] = next(_next_serial)
    if training:
        _in_eval.discard(serial)
    else:
        _in_eval.add(serial)
    _key = frozenset(_in_eval)


def state() -> frozenset[int]:
    """The serials of the modules in eval mode (equal keys = equal modes)."""
    return _key
