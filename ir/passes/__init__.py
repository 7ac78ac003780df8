"""Graph-to-graph passes and the pass manager that runs them by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..graph import Graph
from ..verify import verify

Pass = Callable[[Graph], Graph]

PASSES: dict[str, Pass] = {}


def register_pass(name: str) -> Callable[[Pass], Pass]:
    def wrap(fn: Pass) -> Pass:
        PASSES[name] = fn
        return fn

    return wrap


@dataclass
class PassManager:
    """Runs named passes in order, verifying after each; keeps every stage's graph.

    `stages` maps 'input' and each pass name to the graph it produced, which is
    what the inspection tools print ("IR after each pass").
    """

    names: list[str]
    stages: dict[str, Graph] = field(default_factory=dict)

    def run(self, graph: Graph) -> Graph:
        from . import _load_all  # noqa: F401  (passes register on import)

        unknown = [n for n in self.names if n not in PASSES]
        if unknown:
            raise KeyError(f"unknown pass(es) {unknown}; known: {sorted(PASSES)}")
        self.stages = {"input": verify(graph)}
        for name in self.names:
            graph = verify(PASSES[name](graph))
            key, repeat = name, 2
            while key in self.stages:  # a pass that runs twice: 'dce', then 'dce.2'
                key, repeat = f"{name}.{repeat}", repeat + 1
            self.stages[key] = graph
        return graph
