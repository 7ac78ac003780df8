"""The default optimisation pipeline (registers no pass; the leading underscore keeps
`_load_all` from importing it as one)."""

from __future__ import annotations

from ..graph import Graph
from . import PassManager

# Simplify first so folding and CSE see canonical forms; DCE before fusion so
# dead users do not force extra kernel outputs, and after it to drop the
# layout ops that fusion turned into views. Epilogue fusion needs the fused
# elementwise groups, so it follows elementwise fusion.
DEFAULT_PIPELINE = ["simplify", "constant_fold", "cse", "dce", "fuse_elementwise", "fuse_epilogue", "dce"]


def optimize(graph: Graph) -> tuple[Graph, PassManager]:
    """Run DEFAULT_PIPELINE on `graph`; the manager keeps the graph after each pass."""
    manager = PassManager(list(DEFAULT_PIPELINE))
    return manager.run(graph), manager
