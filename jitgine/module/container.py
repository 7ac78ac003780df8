"""Sequential and ModuleList (modules held as attributes named "0", "1", ...) and ModuleDict (by name), as
MegEngine/PyTorch."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Iterator

from .module import Module


class _Indexed(Module):
    def __init__(self, modules: Iterable[tuple[str, Module]], name: str | None = None) -> None:
        super().__init__(name)
        for key, module in modules:
            self._put(key, module)

    def _put(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected a Module, got {type(module).__name__}")
        setattr(self, key, module)

    def _layers(self) -> list[Module]:
        return [m for k, m in vars(self).items() if isinstance(m, Module)]

    def __len__(self) -> int:
        return len(self._layers())

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers())

    def __getitem__(self, index: Any) -> Any:
        layers = self._layers()
        if isinstance(index, slice):
            return type(self)(*layers[index]) if isinstance(self, Sequential) else ModuleList(layers[index])
        return layers[index]

    def append(self, module: Module) -> None:
        self._put(str(len(self)), module)


class Sequential(_Indexed):
    """Run modules in order: Sequential(m0, m1, ...) or Sequential(OrderedDict(name=module))."""

    def __init__(self, *modules: Any, name: str | None = None) -> None:
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        super().__init__(items, name)

    def forward(self, x: Any) -> Any:
        for layer in self:
            x = layer(x)
        return x


class ModuleList(_Indexed):
    """A list of modules whose parameters the parent module sees."""

    def __init__(self, modules: Iterable[Module] = (), name: str | None = None) -> None:
        super().__init__([(str(i), m) for i, m in enumerate(modules)], name)

    def extend(self, modules: Iterable[Module]) -> None:
        for m in modules:
            self.append(m)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward(); iterate over it")


class ModuleDict(Module):
    """Modules by name (attributes of this module, so the parent sees their parameters), in
    insertion order, with the dict methods."""

    def __init__(self, modules: Any = None, name: str | None = None) -> None:
        super().__init__(name)
        self._order: list[str] = []
        for key, module in (dict(modules) if modules is not None else {}).items():
            self[key] = module

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected a Module for key {key!r}, got {type(module).__name__}")
        if not isinstance(key, str) or not key.isidentifier() or hasattr(Module, key):
            raise KeyError(f"ModuleDict: key {key!r} must be a Python identifier that is not a Module attribute")
        if key not in self._order:
            self._order.append(key)
        setattr(self, key, module)

    def __getitem__(self, key: str) -> Module:
        if key not in self._order:
            raise KeyError(key)
        return getattr(self, key)

    def __delitem__(self, key: str) -> None:
        self._order.remove(key)
        delattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def keys(self) -> list[str]:
        return list(self._order)

    def values(self) -> list[Module]:
        return [getattr(self, k) for k in self._order]

    def items(self) -> list[tuple[str, Module]]:
        return [(k, getattr(self, k)) for k in self._order]

    def update(self, modules: Any) -> None:
        for key, module in dict(modules).items():
            self[key] = module

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward(); index it by name")
