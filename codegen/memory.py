"""Memory planning: where every value of a compiled graph lives.

An analysis of an optimised (fused) graph, run by `compile_graph` before it
lowers anything. Every value gets a `Home`:

- graph inputs live in their input slot (caller-owned arrays);
- a value returned by the graph lives in its output slot (the first position
  it is returned at), so its producer writes straight into the caller's array;
- a `reshape` that is not returned is a view: it shares its operand's home;
  an `assign` result is the new value (as in the interpreter): it shares the
  home of the value assigned;
- every other result lives in ONE arena at a 64-byte aligned byte offset.
  `iota` results are constants, written into the arena once at build time.

Liveness. Node t of the graph runs at time t; the copies that run after the
last node (outputs that live elsewhere, state updates) run at time END =
len(nodes). A value that owns arena storage is live from its producer's time
to its last reader's (through its views too). Intervals are inclusive: a
node's results never share storage with its operands, so no kernel has to
cope with its output overlapping an input (matmul or conv could not).
Offsets are chosen greedily, largest buffer first, each in the smallest gap
left by the buffers already placed whose intervals overlap (best fit).

State updates. `assign(s, v)` means: after the step, state input s holds v;
every read of s in the graph sees the old value (the interpreter never
mutates inputs). Two ways to honour that:

- in place: v's producer p writes v straight into s's buffer, and the copy
  disappears. That is safe when every read of the old s happens before p,
  or inside p itself where p reads s only at the element it is writing (an
  elementwise `fused` kernel reading s through a contiguous view of its own
  index space: element i is loaded before element i is stored, and no other
  element reads it). v must be written by p alone (not an input, a view, a
  constant or a returned value, which lives in its output slot), and s must
  be assigned exactly once. `IN_PLACE_SAFE` lets other primitives declare
  that one of their results may overwrite one of their operands.
- a copy, after every node and after the output copies, in graph order. If
  the value copied lives in another state that a copy overwrites, it is
  first staged in an arena temporary (a swap of two states needs this).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ir.graph import Graph, Node, Value
from ir.ops import view_of
from ir.types import TensorType, contiguous_strides

ALIGN = 64  # bytes: a cache line, and enough for any vector load the kernels emit


@dataclass(frozen=True)
class Home:
    """Where a value's bytes are: slot 'input'/'output' number `index`, or the arena at byte `index`."""

    kind: str
    index: int


@dataclass(frozen=True)
class Interval:
    """An arena buffer: `size` bytes at `offset`, live from time `start` to `end` inclusive."""

    value: Value
    start: int
    end: int
    size: int
    offset: int = 0


@dataclass(frozen=True)
class Copy:
    """A copy run after the last node: the bytes of a value of `type` from `source` into `target`."""

    source: Home
    target: Home
    type: TensorType


@dataclass
class MemoryPlan:
    homes: dict[Value, Home]
    intervals: list[Interval]  # every arena buffer, with its offset
    constants: list[Value]  # iota results: written into the arena once, live throughout
    views: set[Node]  # nodes that run no code: reshapes that alias, assigns
    in_place: list[Node]  # assigns whose value is computed straight into the state buffer
    end_copies: list[Copy]  # output copies, then staging copies, then state copies
    arena_bytes: int
    naive_bytes: int  # one buffer per intermediate (what the arena replaces)

    def summary(self) -> str:
        saved = 1 - self.arena_bytes / self.naive_bytes if self.naive_bytes else 0.0
        return (f"arena {self.arena_bytes} B for {len(self.intervals)} buffers (naive {self.naive_bytes} B, "
                f"{saved:.0%} saved); {len(self.in_place)} state update(s) in place, "
                f"{len(self.end_copies)} copy kernel(s) after the last node")


# op -> (node, result index, operand index) -> may that result share that operand's storage?
InPlaceRule = Callable[[Node, int, int], bool]
IN_PLACE_SAFE: dict[str, InPlaceRule] = {}


def _same_index(node: Node, result: int, operand: int, view: tuple[int, tuple[int, ...]]) -> bool:
    """Does `view` (over the node's index space, the result's shape) read the operand at exactly the
    element the result is written at?"""
    shape = node.results[result].shape
    offset, strides = view
    return (node.operands[operand].type.size == node.results[result].type.size and offset == 0
            and all(s == c for s, c, d in zip(strides, contiguous_strides(shape), shape) if d != 1))


def _fused_rule(node: Node, result: int, operand: int) -> bool:
    """A `fused` kernel loads every operand of element i, then stores element i of each result."""
    return _same_index(node, result, operand, view_of(node.attr("views"), operand))


def _epilogue_rule(node: Node, result: int, operand: int) -> bool:
    """fused_matmul / fused_conv2d (codegen.epilogue): the GEMM keeps partial sums of the stored
    output (`store_output`) in its C tile across K blocks, so that output may overwrite nothing it
    reads unless there is one K block (`stores_once`). Every output is otherwise written once, by
    the epilogue on the last K block, after it has loaded the epilogue operands (2 onwards) at that
    output element: that is a same-element read."""
    from .epilogue import store_output, stores_once

    region = node.region
    if operand < 2 or (result == store_output(region, region.inputs[0].dtype) and not stores_once(node)):
        return False
    return _same_index(node, result, operand, view_of(node.attr("views"), operand - 2))


IN_PLACE_SAFE["fused"] = _fused_rule
IN_PLACE_SAFE["fused_matmul"] = _epilogue_rule
IN_PLACE_SAFE["fused_conv2d"] = _epilogue_rule


def nbytes(type: TensorType) -> int:
    """Arena bytes for a value: rounded up to ALIGN, at least ALIGN (size-0 values get a valid pointer)."""
    return max(ALIGN, -(-type.nbytes // ALIGN) * ALIGN)


@dataclass
class _Analysis:
    """The ownership facts the decisions below share."""

    graph: Graph
    output_position: dict[Value, int]
    owner: dict[Value, Value] = field(default_factory=dict)  # value -> value whose storage it uses
    producer: dict[Value, tuple[int, Node]] = field(default_factory=dict)
    constants: set[Value] = field(default_factory=set)  # iota results: never in an output slot

    @property
    def end(self) -> int:
        return len(self.graph.nodes)

    def storage(self, value: Value, redirect: dict[Value, Value]) -> Value:
        root = self.owner[value]
        return redirect.get(root, root)


def _ownership(graph: Graph) -> _Analysis:
    positions: dict[Value, int] = {}
    for i, value in enumerate(graph.outputs):
        positions.setdefault(value, i)
    for node in graph.nodes:
        if node.op == "iota":
            positions.pop(node.result, None)
    info = _Analysis(graph, positions)
    for value in graph.inputs:
        info.owner[value] = value
    for t, node in enumerate(graph.nodes):
        for result in node.results:
            info.producer[result] = (t, node)
        if node.op == "iota":
            info.constants.add(node.result)
        if node.op == "reshape" and node.result not in positions:
            info.owner[node.result] = info.owner[node.operands[0]]
        elif node.op == "assign":
            info.owner[node.result] = info.owner[node.operands[1]]
        else:
            for result in node.results:
                info.owner[result] = result
    for node in graph.nodes:
        if node.op == "assign" and info.owner[node.operands[0]] not in graph.inputs:
            raise NotImplementedError(f"{graph.name}: assign must write a graph input (a state tensor), "
                                      f"not %{node.operands[0].id}")
    return info


def _reads(info: _Analysis, redirect: dict[Value, Value], copies_first: list[Node]) -> dict[Value, list[int]]:
    """Storage -> the times it is read: by nodes (an assign's target is written, not read), by the
    output copies and by the state copies after the last node."""
    reads: dict[Value, list[int]] = defaultdict(list)
    for t, node in enumerate(info.graph.nodes):
        if node.op == "assign":
            continue
        for operand in node.operands:
            reads[info.storage(operand, redirect)].append(t)
    for i, value in enumerate(info.graph.outputs):
        reads[info.storage(value, redirect)].append(info.end)
    for node in copies_first:
        reads[info.storage(node.operands[1], redirect)].append(info.end)
    return reads


def _in_place(info: _Analysis) -> dict[Node, Value]:
    """The assigns whose value's producer can write straight into the state (value -> state)."""
    graph = info.graph
    assigns = [n for n in graph.nodes if n.op == "assign"]
    targets: dict[Value, int] = defaultdict(int)
    for node in assigns:
        targets[info.owner[node.operands[0]]] += 1
    reads = _reads(info, {}, assigns)
    chosen: dict[Node, Value] = {}
    taken: set[Value] = set()
    for node in assigns:
        state, value = info.owner[node.operands[0]], node.operands[1]
        if targets[state] != 1 or info.owner[value] is not value or value in taken:
            continue
        if value in info.output_position or value not in info.producer or value in info.constants:
            continue  # a returned value lives in its output slot; an input is not produced here
        t, producer = info.producer[value]
        index = producer.results.index(value)
        rule = IN_PLACE_SAFE.get(producer.op)
        # Every read of the old state must come before the producer, or be a same-element read
        # inside it (checked by the producer's rule).
        if any(r > t for r in reads[state]):
            continue
        if any(rule is None or not rule(producer, index, k)
               for k, operand in enumerate(producer.operands) if info.owner[operand] is state):
            continue
        chosen[node] = value
        taken.add(value)
    return chosen


def _best_fit(intervals: list[Interval]) -> list[Interval]:
    """Offsets: largest first, each in the tightest gap among the time-overlapping buffers placed."""
    placed: list[Interval] = []
    for item in sorted(intervals, key=lambda i: (-i.size, i.start, i.value.id)):
        busy = sorted((p.offset, p.offset + p.size) for p in placed
                      if p.start <= item.end and item.start <= p.end)
        best: tuple[int, int] | None = None  # (gap, offset)
        cursor = 0
        for low, high in busy:
            gap = low - cursor
            if gap >= item.size and (best is None or gap < best[0]):
                best = (gap, cursor)
            cursor = max(cursor, high)
        offset = best[1] if best is not None else cursor
        placed.append(Interval(item.value, item.start, item.end, item.size, offset))
    return placed


def plan_memory(graph: Graph) -> MemoryPlan:
    """Homes, arena offsets, in-place state updates and the copies after the last node."""
    info = _ownership(graph)
    end = info.end
    in_place = _in_place(info)
    redirect = {value: info.owner[node.operands[0]] for node, value in in_place.items()}
    copies = [n for n in graph.nodes if n.op == "assign" and n not in in_place]

    # Copies after the last node: outputs that do not live in their own slot, then staging of
    # state copies whose source an earlier state copy overwrites, then the state copies in order.
    staged: list[tuple[Node, Value]] = []
    written: set[Value] = set()
    for node in copies:
        source = info.storage(node.operands[1], redirect)
        if source in written:
            staged.append((node, Value(node.operands[1].type)))
        written.add(info.owner[node.operands[0]])

    reads = _reads(info, redirect, copies)
    arena_values = [r for r in info.owner if info.owner[r] is r and r not in graph.inputs
                    and r not in info.output_position and r not in redirect]
    constants = [v for v in arena_values if v in info.constants]
    intervals = []
    for value in arena_values:
        start = info.producer[value][0]
        last = max(reads.get(value, []), default=start)
        if value in info.constants:
            start, last = -1, end
        intervals.append(Interval(value, start, last, nbytes(value.type)))
    intervals += [Interval(temp, end, end, nbytes(temp.type)) for _, temp in staged]
    intervals = _best_fit(intervals)

    homes: dict[Value, Home] = {}
    for i, value in enumerate(graph.inputs):
        homes[value] = Home("input", i)
    for value, i in info.output_position.items():
        if info.owner.get(value) is value and value not in graph.inputs:
            homes[value] = Home("output", i)
    for item in intervals:
        homes[item.value] = Home("arena", item.offset)
    for value in info.owner:
        if value not in homes:
            homes[value] = homes[info.storage(value, redirect)]

    end_copies = [Copy(homes[v], Home("output", i), v.type) for i, v in enumerate(graph.outputs)
                  if homes[v] != Home("output", i)]
    temps = dict(staged)
    end_copies += [Copy(homes[n.operands[1]], homes[temps[n]], n.operands[1].type) for n, _ in staged]
    for node in copies:
        source = homes[temps[node]] if node in temps else homes[node.operands[1]]
        target = homes[node.operands[0]]
        if source != target:
            end_copies.append(Copy(source, target, node.operands[1].type))

    views = {n for n in graph.nodes if n.op == "assign" or (n.op == "reshape" and info.owner[n.result] is not n.result)}
    return MemoryPlan(
        homes=homes, intervals=intervals, constants=constants, views=views, in_place=list(in_place),
        end_copies=end_copies, arena_bytes=max((i.offset + i.size for i in intervals), default=0),
        naive_bytes=sum(i.size for i in intervals),
    )


def overlapping(plan: MemoryPlan) -> list[tuple[Interval, Interval]]:
    """Pairs of arena buffers that are live at the same time and share bytes (a correct plan has none)."""
    items = sorted(plan.intervals, key=lambda i: i.offset)
    clashes = []
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if b.offset >= a.offset + a.size:
                break
            if a.start <= b.end and b.start <= a.end:
                clashes.append((a, b))
    return clashes


__all__ = ["ALIGN", "Home", "Interval", "Copy", "MemoryPlan", "IN_PLACE_SAFE", "plan_memory", "overlapping"]
