"""Module: the base class of layers and models (MegEngine's `M.Module`).

Attributes are discovered, in definition order, from the instance: a
`Parameter` is a parameter, any other `Tensor` a buffer, a `Module` a child,
and lists, tuples and dicts of those are looked into (their items named
`attr.index` / `attr.key`). Names are dotted paths (`layer1.0.weight`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..core import modes
from ..tensor import Parameter, Tensor

_SKIP = frozenset({"training", "name"})


class Module:
    """Subclass, create parameters / sub-modules in `__init__`, compute in `forward`."""

    def __init__(self, name: str | None = None) -> None:
        self.training = True
        self.name = name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------- discovery
    def _items(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of direct tensors and modules, in definition order."""
        for key, value in vars(self).items():
            if key in _SKIP:
                continue
            if isinstance(value, (Tensor, Module)):
                yield key, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, (Tensor, Module)):
                        yield f"{key}.{i}", item
            elif isinstance(value, dict):
                for k, item in value.items():
                    if isinstance(item, (Tensor, Module)):
                        yield f"{key}.{k}", item

    def _walk(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
        """Every tensor and module below self (depth first, definition order), each object once."""
        for key, value in self._items():
            if id(value) in seen:
                continue
            seen.add(id(value))
            name = f"{prefix}{key}"
            yield name, value
            if isinstance(value, Module):
                yield from value._walk(name + ".", seen)

    def named_tensors(self, prefix: str | None = None, recursive: bool = True) -> Iterator[tuple[str, Tensor]]:
        """Parameters and buffers with their dotted names."""
        start = f"{prefix}." if prefix else ""
        items = self._walk(start, set()) if recursive else ((start + k, v) for k, v in self._items())
        for name, value in items:
            if isinstance(value, Tensor):
                yield name, value

    def tensors(self, recursive: bool = True) -> Iterator[Tensor]:
        for _, t in self.named_tensors(recursive=recursive):
            yield t

    def named_parameters(self, prefix: str | None = None, recursive: bool = True) -> Iterator[tuple[str, Parameter]]:
        for name, t in self.named_tensors(prefix, recursive):
            if isinstance(t, Parameter):
                yield name, t

    def parameters(self, recursive: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recursive=recursive):
            yield p

    def named_buffers(self, prefix: str | None = None, recursive: bool = True) -> Iterator[tuple[str, Tensor]]:
        for name, t in self.named_tensors(prefix, recursive):
            if not isinstance(t, Parameter):
                yield name, t

    def buffers(self, recursive: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recursive=recursive):
            yield b

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen: set[int] = set()
        for key, value in self._items():
            if isinstance(value, Module) and id(value) not in seen:
                seen.add(id(value))
                yield key, value

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str | None = None) -> Iterator[tuple[str, "Module"]]:
        """self (named `prefix` or "") and every sub-module below it."""
        yield prefix or "", self
        start = f"{prefix}." if prefix else ""
        for name, value in self._walk(start, {id(self)}):
            if isinstance(value, Module):
                yield name, value

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    # ------------------------------------------------------------- modes and grads
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            if m.training != bool(mode):
                modes.set_training(m, bool(mode))  # traced functions recorded in the other mode retrace
            m.training = bool(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        """Drop the gradients of every parameter (as `optimizer.clear_grad()`)."""
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------- state
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Dotted name -> read-only NumPy copy of every parameter and buffer."""
        state: "OrderedDict[str, np.ndarray]" = OrderedDict()
        for name, t in self.named_tensors():
            array = t.numpy()
            array.flags.writeable = False
            state[name] = array
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any] | Callable[[str, Tensor], Any],
                        strict: bool = True) -> None:
        """Copy values into parameters and buffers.

        `state_dict` maps dotted names to arrays, or is a callable
        `(name, tensor) -> array or None` (None keeps that tensor as it is). With
        `strict`, missing and unexpected keys are errors; shapes must always match.
        """
        own = OrderedDict(self.named_tensors())
        if callable(state_dict):
            closure = state_dict
            values = {}
            for name, t in own.items():
                value = closure(name, t)
                if value is not None:
                    values[name] = value
            unexpected: list[str] = []
            missing: list[str] = []  # the callable chose which tensors to keep
        else:
            values = dict(state_dict)
            unexpected = [n for n in values if n not in own]
            missing = [n for n in own if n not in values]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}; "
                "pass strict=False to load the keys that match"
            )
        updates = []
        for name, value in values.items():
            if name not in own:
                continue
            target = own[name]
            array = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {name!r} has shape {tuple(array.shape)} "
                    f"but the module's tensor has shape {tuple(target.shape)}"
                )
            updates.append((target, Tensor(np.array(array, dtype=target.dtype, copy=True))))
        for target, value in updates:  # only after every check passed: no half-loaded modules
            target._reset(value)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self._extra_repr()}"]
        children = list(self.named_children())
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + ("\n)" if children else ")")

    def _extra_repr(self) -> str:
        return ""
