"""A picture of a compiled graph: DOT text, rendered by Graphviz's `dot` binary.

Every kernel is a cluster labelled with its name (and, when measured, its
time and share of the step); inside it, the primitives it fused with the
data flowing between them, so a conv + bias + ReLU group shows as one box
holding `conv2d -> add -> le -> select` (bias and relu). Nodes that became no code (views,
constants) are dashed. Graph inputs are ellipses named after the state they
hold (net.conv1.weight, ...), outputs double octagons. `collapse=True`
draws one box per kernel instead. The DOT text is written by hand (no
Python dependency); rendering needs `dot` (Debian: apt-get install graphviz).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ir.graph import Node, Value

from ..jit.inspection import KernelTable, Program, kernel_infos

FORMATS = ("svg", "png", "dot")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _heat(share: float) -> str:
    """Fill colour by share of the step: pale yellow (0%) to orange-red (>= 25%)."""
    t = min(1.0, share / 0.25)
    r, g, b = 255, int(247 - t * (247 - 140)), int(220 - t * (220 - 90))
    return f"#{r:02x}{g:02x}{b:02x}"


def _contraction(node: Node) -> str | None:
    """'conv2d' for fused_conv2d, 'matmul' for fused_matmul: the op a contraction-with-epilogue starts with."""
    if node.region is not None and node.op.startswith("fused_") and node.op != "fused_reduce":
        return node.op[len("fused_"):]
    return None


class _Dot:
    def __init__(self, program: Program, collapse: bool, table: KernelTable | None):
        self.program, self.collapse = program, collapse
        self.lines: list[str] = []
        self.edges: list[str] = []  # emitted last, at top level: an edge inside a cluster would pull
        # its endpoints into that cluster
        self.ids: dict[Value, str] = {}  # top-level value -> the DOT node that produces it
        self.count = 0
        compiled = program.compiled
        self.kernel_of = {id(k.node): k for k in kernel_infos(compiled) if k.node is not None}
        self.seconds = {}
        if table is not None:
            self.seconds = {r["kernel"]: (r["seconds"], r["share"]) for r in table.rows()}
        plan = getattr(compiled, "plan", None)
        self.homes = getattr(plan, "homes", {}) or {}

    def new_id(self) -> str:
        self.count += 1
        return f"n{self.count}"

    def node(self, label: str, indent: str = "  ", **attrs: str) -> str:
        name = self.new_id()
        extra = "".join(f", {k}={_quote(v)}" for k, v in attrs.items())
        self.lines.append(f"{indent}{name} [label={_quote(label)}{extra}];")
        return name

    def edge(self, source: str, target: str) -> None:
        self.edges.append(f"  {source} -> {target};")

    def where(self, value: Value) -> str:
        home = self.homes.get(value)
        if home is not None and getattr(home, "kind", None) == "arena":
            return f" @arena+{home.index}"
        return ""

    def region(self, node: Node, indent: str) -> list[str]:
        """Draw `node`'s region inside the current cluster; returns the DOT ids of its results."""
        region = node.region
        local: dict[Value, str] = {}
        contraction = _contraction(node)
        operands = list(node.operands)
        if contraction is not None:
            head = self.node(contraction, indent, fillcolor="#ffffff")
            for operand in operands[:2]:
                self.edge(self.ids[operand], head)
            local[region.inputs[0]] = head
            sources = operands[2:]
            params = region.inputs[1:]
        else:
            sources, params = operands, region.inputs
        for param, operand in zip(params, sources):
            local[param] = self.ids[operand]
        returned = set(region.outputs)
        for inner in region.walk():
            if inner.op == "constant" and not returned.intersection(inner.results):
                continue  # a constant operand is part of its user's meaning; drawing it adds clutter
            name = self.node(inner.op, indent, fillcolor="#ffffff", shape="box")
            for operand in inner.operands:
                if operand in local:
                    self.edge(local[operand], name)
            for r in inner.results:
                local[r] = name
        outputs = [local[v] for v in region.outputs]
        if node.op == "fused_reduce":
            reduce = self.node(f"{node.attr('reduce')} axes={list(node.attr('axes'))}", indent, fillcolor="#ffffff")
            self.edge(outputs[0], reduce)
            outputs = [reduce]
        return outputs

    def kernel_label(self, node: Node) -> str:
        kernel = self.kernel_of.get(id(node))
        label = kernel.name if kernel is not None else node.op
        if kernel is not None and kernel.name in self.seconds:
            seconds, share = self.seconds[kernel.name]
            label += f"\n{seconds * 1e3:.3f} ms ({100 * share:.1f}%)"
        types = "\n".join(f"{r.type}{self.where(r)}" for r in node.results)
        return f"{label}\n{types}"

    def fill(self, node: Node, default: str) -> str:
        kernel = self.kernel_of.get(id(node))
        if kernel is not None and kernel.name in self.seconds:
            return _heat(self.seconds[kernel.name][1])
        return default

    def top_node(self, node: Node) -> None:
        kernel = self.kernel_of.get(id(node))
        if node.region is None or self.collapse:
            label = self.kernel_label(node)
            if node.region is not None:
                label = label.replace("\n", "\n" + "+".join(kernel.primitives) + "\n", 1) if kernel else label
            style = "rounded,filled" if kernel is not None else "rounded,dashed"
            name = self.node(label, style=style, fillcolor=self.fill(node, "#eef3fb" if kernel else "#ffffff"))
            for operand in dict.fromkeys(node.operands):
                self.edge(self.ids[operand], name)
            for r in node.results:
                self.ids[r] = name
            return
        self.count += 1
        cluster = f"cluster_{self.count}"
        self.lines.append(f"  subgraph {cluster} {{")
        self.lines.append(f"    label={_quote(self.kernel_label(node))}; style=\"rounded,filled\"; "
                          f"fillcolor={_quote(self.fill(node, '#fff4d6'))}; color=\"#c08a00\"; fontsize=10;")
        results = self.region(node, "    ")
        self.lines.append("  }")
        for r, source in zip(node.results, results):
            self.ids[r] = source

    def build(self) -> str:
        program, graph = self.program, self.program.graph
        self.lines = [
            f"digraph {_quote(graph.name)} {{",
            '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.2, ranksep=0.3];',
            '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled", fillcolor="#ffffff"];',
            '  edge [color="#666666", arrowsize=0.6];',
        ]
        for name, value in zip(program.input_names(), graph.inputs):
            self.ids[value] = self.node(f"{name}\n{value.type}", shape="ellipse", fillcolor="#e3f2e1")
        for node in graph.nodes:
            self.top_node(node)
        for i, value in enumerate(graph.outputs):
            out = self.node(f"output {i}\n{value.type}", shape="doubleoctagon", fillcolor="#e1ecf7")
            self.edge(self.ids[value], out)
        return "\n".join(self.lines + self.edges + ["}"]) + "\n"


def to_dot(program: Program, collapse: bool = False, table: KernelTable | None = None) -> str:
    """The DOT text of `program`'s optimised graph; `table` adds measured times and colours."""
    return _Dot(program, collapse, table).build()


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz's `dot -T<fmt>` on `dot_text`."""
    binary = shutil.which("dot")
    if binary is None:
        raise RuntimeError("drawing graphs needs Graphviz's `dot` program: install graphviz "
                           "(Debian/Ubuntu: apt-get install graphviz) or write .dot and render it elsewhere")
    done = subprocess.run([binary, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.decode(errors='replace')[:2000]}")
    return done.stdout


def write_graph(program: Program, path: str, collapse: bool = False, table: KernelTable | None = None) -> str:
    """Write the picture to `path` (.svg, .png or .dot, by extension), atomically; returns `path`."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot draw to {path!r}: the extension must be one of .svg, .png, .dot")
    text = to_dot(program, collapse, table)
    data = text.encode() if fmt == "dot" else render(text, fmt)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


__all__ = ["to_dot", "render", "write_graph"]
