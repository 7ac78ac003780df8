"""Sequential and ModuleList: modules held as attributes named "0", "1", ... (as MegEngine/PyTorch)."""

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
