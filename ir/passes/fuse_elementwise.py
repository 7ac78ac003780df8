"""Elementwise fusion: groups of elementwise ops become `fused` kernels.

Grouping. Nodes are visited in order; an elementwise node joins the groups
of its elementwise producers (it has their shape, since elementwise operands
share one shape) unless that would make the fused node depend on itself: a
group must never contain two nodes with a path between them through a node
outside it. With `ancestors[i]` as a bitset, the test is that no operand
produced outside the merged group has an ancestor inside it.

Operands. A group reads values produced outside it. Layout ops in front of a
materialised buffer (a graph input or any non-layout node's result, which are
contiguous) are composed into one (offset, strides) view, so they cost no
copy; a splat `constant` (possibly behind layout ops) becomes a scalar
`constant` in the region. A reshape of a value that is not contiguous cannot
be a view (dims it merges are not contiguous with each other); there the
chain stops and the reshape stays a node.

Results. Every member result used outside the group, or returned by the
graph, is a region output. A `reduce_*` whose operand is the only output of
a group takes the group in as a `fused_reduce`; any other reduction becomes a
`fused_reduce` with an identity region, so no bare elementwise or reduce
node is left for the back end.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..graph import Graph, Node, Value, freeze_attrs
from ..ops import REDUCTIONS, infer, is_elementwise
from ..printer import format_attr
from ..types import TensorType, contiguous_strides
from . import register_pass
from .dce import dce

VIEW_OPS = frozenset({"reshape", "broadcast", "permute", "slice"})

View = tuple[int, tuple[int, ...]]


def reshape_strides(shape: tuple[int, ...], strides: tuple[int, ...],
                    new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Strides that read a (shape, strides) view in row-major order as `new_shape`, if any exist.

    As NumPy's no-copy reshape: dims are matched in groups of equal element
    count, and each old group must be contiguous within itself. Size-1 dims
    take any stride (0 here).
    """
    if 0 in shape:
        return contiguous_strides(new_shape)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    result = [0] * len(new_shape)
    i = j = 0
    while j < len(new_shape):
        if new_shape[j] == 1:
            j += 1
            continue
        first_new = j
        new_count, old_count, first_old = new_shape[j], old[i][0], i
        while new_count != old_count:
            if new_count < old_count:
                j += 1
                new_count *= new_shape[j]
            else:
                i += 1
                old_count *= old[i][0]
        if any(old[k][1] != old[k + 1][1] * old[k + 1][0] for k in range(first_old, i)):
            return None
        step = old[i][1]
        for k in range(j, first_new - 1, -1):
            result[k] = 0 if new_shape[k] == 1 else step
            step *= new_shape[k]
        i, j = i + 1, j + 1
    return tuple(result)


def compose(node: Node, view: View, shape: tuple[int, ...]) -> View | None:
    """The view of `node`'s result, given the view of its operand (of `shape`); None if none exists."""
    offset, strides = view
    out = node.result.shape
    if node.op == "broadcast":
        lead = len(out) - len(shape)
        new = [0] * lead + [0 if d == 1 and o != 1 else s for s, d, o in zip(strides, shape, out[lead:])]
        return offset, tuple(new)
    if node.op == "reshape":
        new = reshape_strides(shape, strides, out)
        return None if new is None else (offset, new)
    if node.op == "permute":
        return offset, tuple(strides[p] for p in node.attr("perm"))
    if node.op == "slice":
        starts, steps = node.attr("starts"), node.attr("steps")
        if 0 in out:
            return 0, tuple(strides)
        return offset + sum(a * s for a, s in zip(starts, strides)), tuple(s * k for s, k in zip(strides, steps))
    raise AssertionError(node.op)


@dataclass
class Source:
    """Where a group operand comes from: a buffer read through a view, or a splat."""

    buffer: Value | None = None
    view: View | None = None
    splat: Node | None = None


def resolve(value: Value, producer: dict[Value, Node]) -> Source:
    """Follow layout ops back to a buffer or splat, composing the view on the way out."""
    chain: list[Node] = []
    node = producer.get(value)
    while node is not None and node.op in VIEW_OPS:
        chain.append(node)
        node = producer.get(node.operands[0])
    if node is not None and node.op == "constant":
        return Source(splat=node)
    # Compose from the buffer outwards; stop at the last layout op that is not a view.
    base = chain[-1].operands[0] if chain else value
    view: View = (0, contiguous_strides(base.shape))
    for layout in reversed(chain):
        composed = compose(layout, view, layout.operands[0].shape)
        if composed is None:
            base, view = layout.result, (0, contiguous_strides(layout.result.shape))
        else:
            view = composed
    return Source(buffer=base, view=view)


@dataclass
class Group:
    members: list[int] = field(default_factory=list)  # node indices, in order
    reduce: int | None = None  # index of the reduction that absorbed the group


class _Fuser:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = graph.nodes
        self.producer = graph.producers()
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.users: dict[Value, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for v in node.operands:
                self.users.setdefault(v, []).append(i)
        self.outputs = set(graph.outputs)
        self.group_of: dict[int, int] = {}  # node index -> group id
        self.groups: dict[int, Group] = {}
        self.ancestors: list[int] = []  # per node, a bitset of itself and every node it depends on
        self.extra: list[Node] = []  # new graph-level nodes (materialised splats)

    def producer_index(self, value: Value) -> int | None:
        node = self.producer.get(value)
        return None if node is None else self.index[id(node)]

    def legal(self, members: set[int]) -> bool:
        mask = sum(1 << m for m in members)
        for m in members:
            for v in self.nodes[m].operands:
                p = self.producer_index(v)
                if p is not None and p not in members and self.ancestors[p] & mask:
                    return False
        return True

    def form_groups(self) -> None:
        for i, node in enumerate(self.nodes):
            mask = 1 << i
            for v in node.operands:
                p = self.producer_index(v)
                if p is not None:
                    mask |= self.ancestors[p]
            self.ancestors.append(mask)
            if not is_elementwise(node.op):
                continue
            members = {i}
            joined: list[int] = []
            for v in node.operands:
                p = self.producer_index(v)
                gid = self.group_of.get(p) if p is not None else None
                if gid is None or gid in joined:
                    continue
                candidate = members | set(self.groups[gid].members)
                if self.legal(candidate):
                    members, joined = candidate, joined + [gid]
            for gid in joined:
                del self.groups[gid]
            self.groups[i] = Group(sorted(members))
            for m in members:
                self.group_of[m] = i

    def external_results(self, group: Group) -> list[Value]:
        inside = set(group.members)
        results = []
        for m in group.members:
            for r in self.nodes[m].results:
                if r in self.outputs or any(u not in inside for u in self.users.get(r, [])):
                    results.append(r)
        return results

    def absorb_reductions(self) -> None:
        for i, node in enumerate(self.nodes):
            if node.op not in REDUCTIONS:
                continue
            p = self.producer_index(node.operands[0])
            gid = self.group_of.get(p) if p is not None else None
            if gid is None or self.groups[gid].reduce is not None:
                continue
            x = node.operands[0]
            if self.external_results(self.groups[gid]) == [x] and self.users[x] == [i] and x not in self.outputs:
                self.groups[gid].reduce = i

    def build_region(self, members: list[int], roots: list[Value]):
        """The region computing `roots` from `members`, with its operands and their views."""
        inside = {r for m in members for r in self.nodes[m].results}
        scalar: dict[Value, Value] = {}
        region_nodes: list[Node] = []
        params: list[Value] = []
        operands: list[Value] = []
        views: list[tuple[int, ...]] = []
        by_source: dict[tuple, Value] = {}

        def scalar_of(value: Value) -> Value:
            if value in scalar:
                return scalar[value]
            source = resolve(value, self.producer)
            if source.splat is not None:
                c = source.splat
                attrs = freeze_attrs({"value": c.attr("value"), "shape": (), "dtype": c.result.dtype.value})
                # By text: 0.0 == -0.0 (and 1 == 1.0 == True) must stay distinct constants.
                key = ("splat", c.result.dtype, format_attr(c.attr("value")))
                if key not in by_source:
                    node = Node("constant", (), attrs, (Value(TensorType((), c.result.dtype)),))
                    region_nodes.append(node)
                    by_source[key] = node.result
            else:
                key = (id(source.buffer), source.view)
                if key not in by_source:
                    param = Value(TensorType((), value.dtype))
                    params.append(param)
                    operands.append(source.buffer)
                    views.append((source.view[0], *source.view[1]))
                    by_source[key] = param
            scalar[value] = by_source[key]
            return scalar[value]

        for m in members:
            node = self.nodes[m]
            args = tuple(scalar[v] if v in inside else scalar_of(v) for v in node.operands)
            results = tuple(Value(TensorType((), r.dtype)) for r in node.results)
            region_nodes.append(Node(node.op, args, node.attrs, results))
            scalar.update(zip(node.results, results))
        if not members:
            for root in roots:
                scalar_of(root)
        return Graph(params, region_nodes, [scalar[r] for r in roots], "region"), operands, views

    def fused_node(self, op: str, members: list[int], roots: list[Value], shape: tuple[int, ...],
                   **extra: object) -> Node:
        region, operands, views = self.build_region(members, roots)
        if op == "fused_reduce" and not operands:
            # The kernel takes its index space from its inputs: give it one (the splat, materialised).
            region, operands, views = self._materialise_splat(region, shape)
        attrs = freeze_attrs({"shape": shape, "views": tuple(views), **extra})
        types = infer(op, [v.type for v in operands], dict(attrs), region)
        return Node(op, tuple(operands), attrs, tuple(Value(t) for t in types), region)

    def _materialise_splat(self, region: Graph, shape: tuple[int, ...]):
        """Turn the region's first constant (every operand was a splat) into a graph-level operand."""
        constant = region.nodes[0]
        buffer = Node("constant", (), constant.attrs, (Value(constant.result.type),))
        self.extra.append(buffer)
        param = Value(constant.result.type)
        nodes = [Node(n.op, tuple(param if v is constant.result else v for v in n.operands), n.attrs, n.results)
                 for n in region.nodes[1:]]
        outputs = [param if v is constant.result else v for v in region.outputs]
        return Graph([param], nodes, outputs, "region"), [buffer.result], [(0,) + (0,) * len(shape)]

    def run(self) -> Graph:
        self.form_groups()
        self.absorb_reductions()
        emitted: list[tuple[int, Node]] = []
        replace: dict[Value, Value] = {}
        done: set[int] = set()
        for gid, group in self.groups.items():
            last = group.members[-1]
            shape = self.nodes[last].results[0].shape
            if group.reduce is not None:
                reduction = self.nodes[group.reduce]
                fused = self.fused_node("fused_reduce", group.members, [reduction.operands[0]], shape,
                                        reduce=reduction.op, axes=reduction.attr("axes"))
                replace[reduction.result] = fused.result
                emitted.append((group.reduce, fused))
                done.add(group.reduce)
            else:
                roots = self.external_results(group)
                fused = self.fused_node("fused", group.members, roots, shape)
                replace.update(zip(roots, fused.results))
                emitted.append((last, fused))
            done.update(group.members)
        for i, node in enumerate(self.nodes):
            if i in done:
                continue
            if node.op in REDUCTIONS:
                x = node.operands[0]
                node = self.fused_node("fused_reduce", [], [x], x.shape, reduce=node.op, axes=node.attr("axes"))
                replace[self.nodes[i].result] = node.result
            emitted.append((i, node))
        for buffer in self.extra:
            emitted.append((-1, buffer))
        nodes = _topological([(key, _substitute(n, replace)) for key, n in emitted])
        outputs = [replace.get(v, v) for v in self.graph.outputs]
        return Graph(list(self.graph.inputs), nodes, outputs, self.graph.name)


def _substitute(node: Node, replace: dict[Value, Value]) -> Node:
    operands = tuple(replace.get(v, v) for v in node.operands)
    if operands == node.operands:
        return node
    return Node(node.op, operands, node.attrs, node.results, node.region)


def _topological(keyed: list[tuple[int, Node]]) -> list[Node]:
    """Order nodes so every operand is defined first, otherwise by their key (original position)."""
    defined_by = {r: j for j, (_, n) in enumerate(keyed) for r in n.results}
    waiting = [sum(1 for v in set(n.operands) if v in defined_by) for _, n in keyed]
    users: dict[int, list[int]] = {}
    for j, (_, n) in enumerate(keyed):
        for v in set(n.operands):
            if v in defined_by:
                users.setdefault(defined_by[v], []).append(j)
    ready = [(key, j) for j, (key, _) in enumerate(keyed) if waiting[j] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, j = heapq.heappop(ready)
        order.append(keyed[j][1])
        for u in users.get(j, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (keyed[u][0], u))
    if len(order) != len(keyed):
        raise AssertionError("fuse_elementwise: the fused graph has a cycle")
    return order


@register_pass("fuse_elementwise")
def fuse_elementwise(graph: Graph) -> Graph:
    """A new graph where elementwise work and reductions run as fused kernels."""
    return dce(_Fuser(graph).run())
