"""`f.dump(path)` and `jitgine.jit.load(path)`: a traced function as a file.

The file holds every compiled signature's graph as traced (IR text, before
the passes) and the state the graphs read: parameters, optimizer slots,
BatchNorm statistics, the learning rate. `load` parses it and returns a
`LoadedFunction`, which compiles each graph on first use and runs it
without the Python model code: inference, or further training when the
dumped step updated its state (the graph's `assign` nodes write the new
values into the loaded state arrays, exactly as in the traced original).

Format: a `jitgine.save` file (jitgine/serialization.py: magic, JSON header
with CRC, 64-byte aligned raw little-endian arrays with CRCs; parsed, never
unpickled; written atomically) whose root is::

    {"format": "jitgine.jit.dump", "version": 1, "name": str,
     "state": [{"name": str, "array": ndarray}, ...],
     "signatures": [{
        "arguments": [{"kind": "array", "shape": [int], "dtype": str} | {"kind": "scalar", "value": ...}],
        "kwargs": [str],           # keyword argument names (their values follow the positional ones)
        "graph": str,              # IR text (ir.printer) as traced
        "state": [int],            # graph inputs after the argument arrays: indices into "state"
        "outputs": int,            # the first graph outputs are the function's results ...
        "grads": [int],            # ... the rest the .grad of these state entries
        "structure": node}]}       # how results nest: {"type": "tensor", "index": i} | "none" |
                                   # "list"/"tuple" with "items" | "dict" with "keys" and "values"
"""

from __future__ import annotations

import inspect as pyinspect
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from codegen.compiler import CompiledGraph
from ir.graph import Graph
from ir.interpret import NP_DTYPES
from ir.parser import ParseError, parse_graph

from .. import serialization
from ..tensor import Tensor
from .inspection import Inspectable, Program
from .trace import call_arguments

FORMAT = "jitgine.jit.dump"
VERSION = 1
_DTYPE_NAMES = {np.dtype(t).name for t in NP_DTYPES.values()}


@dataclass
class Signature:
    """One compiled signature of a dumped function."""

    arguments: list[dict]
    kwargs: list[str]
    graph: Graph  # as traced, before the passes
    state: list[int]
    outputs: int
    grads: list[int]
    structure: dict

    @property
    def n_arrays(self) -> int:
        return sum(a["kind"] == "array" for a in self.arguments)

    def describe(self) -> str:
        parts = []
        for a in self.arguments:
            if a["kind"] == "array":
                parts.append(f"{np.dtype(a['dtype']).name}[{','.join(map(str, a['shape']))}]")
            else:
                parts.append(repr(a["value"]))
        return "(" + ", ".join(parts) + ")" + (f" kwargs {self.kwargs}" if self.kwargs else "")


@dataclass
class Bundle:
    """What a dump file holds."""

    name: str
    state_names: list[str]
    state: list[np.ndarray]
    signatures: list[Signature]


# ---------------------------------------------------------------------------- from a trace

class _Leaf:
    def __init__(self, index: int):
        self.index = index


def _structure_spec(tree: Any) -> dict:
    if isinstance(tree, _Leaf):
        return {"type": "tensor", "index": tree.index}
    if tree is None:
        return {"type": "none"}
    if isinstance(tree, (list, tuple)):
        return {"type": "list" if isinstance(tree, list) else "tuple", "items": [_structure_spec(t) for t in tree]}
    if isinstance(tree, dict):
        return {"type": "dict", "keys": list(tree), "values": [_structure_spec(v) for v in tree.values()]}
    raise TypeError(f"cannot describe a result of type {type(tree)}")


def _tensor_names(function: Callable | None) -> dict[int, str]:
    """Names for captured tensors, from the tensors, modules and optimizers the function refers to by name."""
    from ..module import Module
    from ..optimizer import Optimizer

    if function is None or not hasattr(function, "__code__"):
        return {}
    try:
        refs = pyinspect.getclosurevars(function)
    except (TypeError, ValueError):
        return {}
    names: dict[int, str] = {}
    objects = {**refs.globals, **refs.nonlocals}
    for var, obj in objects.items():
        if isinstance(obj, Module):
            for name, tensor in obj.named_tensors(prefix=var):
                names.setdefault(id(tensor), name)
        elif isinstance(obj, Tensor):
            names.setdefault(id(obj), var)
    for var, obj in objects.items():
        if isinstance(obj, Optimizer):
            param_names = {id(p): names.get(id(p), f"param{i}") for i, p in enumerate(obj._params())}
            for key, slots in obj.state.items():
                for slot, tensor in slots.items():
                    if isinstance(tensor, Tensor):
                        names.setdefault(id(tensor), f"{var}.{param_names.get(key, key)}.{slot}")
            for g, group in enumerate(obj.param_groups):
                for dtype, tensor in group._lr_tensors.items():
                    names.setdefault(id(tensor), f"{var}.lr{g if g else ''}")
    return names


def _arguments(key: tuple) -> tuple[list[dict], list[str]]:
    arguments = []
    for item in key:
        if item[0] == "array":
            arguments.append({"kind": "array", "shape": list(item[1]), "dtype": np.dtype(item[2]).name})
        elif item[0] == "scalar":
            arguments.append({"kind": "scalar", "value": item[1]})
    kwargs = next((list(item[1]) for item in key if item[0] == "kwargs"), [])
    return arguments, kwargs


def bundle_from_trace(traced) -> Bundle:
    """Every compiled signature of a `trace` object and the state its graphs read."""
    if not traced.executables:
        raise RuntimeError(f"{traced.__name__} has not been traced yet: call it once before dump()")
    names = _tensor_names(traced._function)
    index: dict[int, int] = {}
    state_names: list[str] = []
    state: list[np.ndarray] = []

    def slot(tensor: Tensor) -> int:
        if id(tensor) not in index:
            index[id(tensor)] = len(state)
            state_names.append(names.get(id(tensor), f"state{len(state)}"))
            state.append(tensor._array)
        return index[id(tensor)]

    by_call: dict[str, Signature] = {}
    for key, executable in traced.executables.items():
        arguments, kwargs = _arguments(key)
        structure = _structure_spec(executable.structure([_Leaf(i) for i in range(executable.output_count)]))
        signature = Signature(arguments, kwargs, executable.stages["input"], [slot(t) for t in executable.captured],
                              executable.output_count, [slot(t) for t in executable.grads], structure)
        # Signatures that differ only in module train/eval state: the latest compiled one wins.
        by_call[signature.describe()] = signature
    return Bundle(traced.__name__, state_names, state, list(by_call.values()))


def select(bundle: Bundle, signatures: list[Signature]) -> Bundle:
    """`bundle` with only `signatures` and the state they read."""
    used = sorted({i for s in signatures for i in s.state + s.grads})
    remap = {old: new for new, old in enumerate(used)}
    kept = [Signature(s.arguments, s.kwargs, s.graph, [remap[i] for i in s.state], s.outputs,
                      [remap[i] for i in s.grads], s.structure) for s in signatures]
    return Bundle(bundle.name, [bundle.state_names[i] for i in used], [bundle.state[i] for i in used], kept)


_COMPILED: dict[str, tuple[dict[str, Graph], CompiledGraph]] = {}


def compile_traced(graph: Graph) -> tuple[dict[str, Graph], CompiledGraph]:
    """Run `trace`'s pass pipeline on a traced graph and compile it: (stages, compiled).

    Kept per process by the graph's text (lowering a training step takes seconds even when the
    machine code comes from the disk cache), so loading one dump twice compiles once. A
    CompiledGraph may be shared: every run binds its own arrays.
    """
    from ir.passes import PassManager

    from codegen.compiler import compile_graph

    from .trace import PIPELINE

    key = str(graph)
    if key not in _COMPILED:
        passes = PassManager(list(PIPELINE))
        compiled = compile_graph(passes.run(graph))
        while len(_COMPILED) >= 8:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = (passes.stages, compiled)
    return _COMPILED[key]


def program_of(traced, executable) -> Program:
    """The `Program` view of one compiled signature of a `trace` object (kept per executable)."""
    programs = traced.__dict__.setdefault("_programs", {})
    entry = programs.get(id(executable))
    if entry is None or entry[0] is not executable:
        names = _tensor_names(traced._function)
        key = next(k for k, e in traced.executables.items() if e is executable)
        from .observe import signature_text

        program = Program(traced.__name__, executable.stages, executable.compiled, executable.n_args, [],
                          [names.get(id(t), f"state{i}") for i, t in enumerate(executable.captured)],
                          f"({signature_text(key)})")
        entry = programs[id(executable)] = (executable, program)
    program = entry[1]
    program.state = [t._array for t in executable.captured]  # the tensors' current storage
    return program


# ---------------------------------------------------------------------------- the file

def write_dump(bundle: Bundle, path: str | os.PathLike) -> None:
    """Write `bundle` to `path` atomically."""
    root = {
        "format": FORMAT, "version": VERSION, "name": bundle.name,
        "state": [{"name": n, "array": a} for n, a in zip(bundle.state_names, bundle.state)],
        "signatures": [{
            "arguments": s.arguments, "kwargs": s.kwargs, "graph": str(s.graph), "state": s.state,
            "outputs": s.outputs, "grads": s.grads, "structure": s.structure,
        } for s in bundle.signatures],
    }
    serialization.save(root, path)


class DumpError(ValueError):
    """A file that is not a readable function dump."""


def _fail(path: str, problem: str) -> DumpError:
    return DumpError(f"jitgine.jit.load: {path}: {problem}")


def _int_list(value: Any, path: str, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise _fail(path, f"bad dump: {where} must be a list of non-negative integers")
    return value


def _check_structure(node: Any, outputs: int, path: str, where: str) -> None:
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "tensor":
        i = node.get("index")
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < outputs:
            raise _fail(path, f"bad dump: {where} refers to result {i!r} of {outputs}")
    elif kind in ("list", "tuple"):
        if not isinstance(node.get("items"), list):
            raise _fail(path, f"bad dump: {where} needs 'items'")
        for j, item in enumerate(node["items"]):
            _check_structure(item, outputs, path, f"{where}[{j}]")
    elif kind == "dict":
        keys, values = node.get("keys"), node.get("values")
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
            raise _fail(path, f"bad dump: {where} needs 'keys' and 'values' of one length")
        for k, item in zip(keys, values):
            _check_structure(item, outputs, path, f"{where}[{k!r}]")
    elif kind != "none":
        raise _fail(path, f"bad dump: {where} has unknown structure type {kind!r}")


def _signature(raw: Any, n_state: int, state: list[np.ndarray], path: str, i: int) -> Signature:
    where = f"signature {i}"
    needed = {"arguments", "kwargs", "graph", "state", "outputs", "grads", "structure"}
    if not isinstance(raw, dict) or not needed <= raw.keys():
        raise _fail(path, f"bad dump: {where} needs {sorted(needed)}")
    arguments = raw["arguments"]
    if not isinstance(arguments, list) or not all(
            isinstance(a, dict) and (a.get("kind") == "scalar" and "value" in a or a.get("kind") == "array"
                                     and isinstance(a.get("shape"), list) and a.get("dtype") in _DTYPE_NAMES)
            for a in arguments):
        raise _fail(path, f"bad dump: {where} has malformed arguments")
    if not isinstance(raw["kwargs"], list) or not all(isinstance(k, str) for k in raw["kwargs"]):
        raise _fail(path, f"bad dump: {where} kwargs must be a list of names")
    if not isinstance(raw["graph"], str):
        raise _fail(path, f"bad dump: {where} graph must be IR text")
    try:
        graph = parse_graph(raw["graph"])
    except (ParseError, ValueError) as e:
        raise _fail(path, f"{where}: the graph does not parse: {e}") from None
    state_ids, grads = _int_list(raw["state"], path, f"{where} state"), _int_list(raw["grads"], path, f"{where} grads")
    outputs = raw["outputs"]
    if any(s >= n_state for s in state_ids + grads):
        raise _fail(path, f"bad dump: {where} refers to state entries beyond the {n_state} in the file")
    if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs + len(grads) != len(graph.outputs):
        raise _fail(path, f"bad dump: {where} declares {outputs!r} results and {len(grads)} gradients, "
                          f"the graph has {len(graph.outputs)} outputs")
    signature = Signature(arguments, raw["kwargs"], graph, state_ids, outputs, grads, raw["structure"])
    if len(graph.inputs) != signature.n_arrays + len(state_ids):
        raise _fail(path, f"bad dump: {where}'s graph takes {len(graph.inputs)} inputs, the signature provides "
                          f"{signature.n_arrays} arguments and {len(state_ids)} state arrays")
    wanted = [(tuple(a["shape"]), a["dtype"]) for a in arguments if a["kind"] == "array"]
    wanted += [(state[s].shape, state[s].dtype.name) for s in state_ids]
    for j, (value, (shape, dtype)) in enumerate(zip(graph.inputs, wanted)):
        if value.shape != shape or np.dtype(NP_DTYPES[value.dtype.value]).name != dtype:
            raise _fail(path, f"bad dump: {where} input {j} is {value.type} in the graph but {dtype}{list(shape)} "
                              "in the file")
    _check_structure(raw["structure"], outputs, path, f"{where} structure")
    return signature


def read_dump(path: str | os.PathLike) -> Bundle:
    """Parse and check a dump file; every problem is a `DumpError` naming the file."""
    name = os.fspath(path)
    try:
        root = serialization.load(path)
    except ValueError as e:
        raise _fail(name, str(e).split(": ", 2)[-1]) from None
    if not isinstance(root, dict) or root.get("format") != FORMAT:
        raise _fail(name, "this is a jitgine.save file (e.g. a state dict), not a function dumped with "
                          "f.dump(path); read it with jitgine.load")
    if root.get("version") != VERSION:
        raise _fail(name, f"dump format version {root.get('version')!r} is not supported (this jitgine reads "
                          f"version {VERSION}); upgrade jitgine")
    entries = root.get("state")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("array"), np.ndarray)
            for e in entries):
        raise _fail(name, "bad dump: 'state' must be a list of {name, array}")
    state = [e["array"] for e in entries]
    raw_signatures = root.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise _fail(name, "bad dump: no compiled signatures")
    signatures = [_signature(raw, len(state), state, name, i) for i, raw in enumerate(raw_signatures)]
    return Bundle(str(root.get("name", "loaded")), [e["name"] for e in entries], state, signatures)


# ---------------------------------------------------------------------------- the loaded callable

def _rebuild(spec: dict, results: list[Tensor]) -> Any:
    kind = spec["type"]
    if kind == "tensor":
        return results[spec["index"]]
    if kind == "none":
        return None
    if kind in ("list", "tuple"):
        items = [_rebuild(s, results) for s in spec["items"]]
        return items if kind == "list" else tuple(items)
    return {k: _rebuild(v, results) for k, v in zip(spec["keys"], spec["values"])}


class LoadedFunction(Inspectable):
    """A dumped function read back: call it like the traced original."""

    def __init__(self, bundle: Bundle, source: str = ""):
        self.bundle = bundle
        self.__name__ = bundle.name
        self.source = source
        self.grads: dict[str, Tensor] = {}  # .grad outputs of the last call, by state name
        self._programs: dict[int, Program] = {}
        self._last = len(bundle.signatures) - 1

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The state arrays (updated in place by training steps)."""
        return dict(zip(self.bundle.state_names, self.bundle.state))

    @property
    def signatures(self) -> list[str]:
        return [s.describe() for s in self.bundle.signatures]

    def program(self, index: int | None = None) -> Program:
        """The compiled program of signature `index` (default: the last one called, or the last dumped)."""
        index = self._last if index is None else index
        if index not in self._programs:
            s = self.bundle.signatures[index]
            stages, compiled = compile_traced(s.graph)
            self._programs[index] = Program(
                self.__name__, stages, compiled, s.n_arrays, [self.bundle.state[i] for i in s.state],
                [self.bundle.state_names[i] for i in s.state], s.describe())
        return self._programs[index]

    _program = program

    def _match(self, args: tuple, kwargs: dict) -> tuple[int, list[np.ndarray]]:
        arrays, entries = call_arguments(args, kwargs, self.__name__, TypeError)
        call = [{"kind": "array", "shape": list(entry[1]), "dtype": np.dtype(entry[2]).name}
                if entry[0] == "array" else {"kind": "scalar", "value": entry[1]} for entry in entries]
        for i, s in enumerate(self.bundle.signatures):
            if s.arguments == call and s.kwargs == sorted(kwargs):
                return i, arrays
        described = Signature(call, sorted(kwargs), Graph([], [], []), [], 0, [], {}).describe()
        raise TypeError(f"{self.__name__} was dumped for the signature(s) {', '.join(self.signatures)}; "
                        f"called with {described}. Trace and dump the function with this signature too")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        index, arrays = self._match(args, kwargs)
        self._last = index
        program, signature = self.program(index), self.bundle.signatures[index]
        graph = program.graph
        outputs = [np.empty(v.shape, NP_DTYPES[v.dtype.value]) for v in graph.outputs]
        program.compiled.run_into(arrays + program.state, outputs)
        for state_index, array in zip(signature.grads, outputs[signature.outputs:]):
            self.grads[self.bundle.state_names[state_index]] = Tensor._wrap(array)
        return _rebuild(signature.structure, [Tensor._wrap(a) for a in outputs[:signature.outputs]])

    def dump(self, path: str | os.PathLike) -> None:
        """Write this function with its current state (e.g. after further training)."""
        write_dump(self.bundle, path)


def load(path: str | os.PathLike) -> LoadedFunction:
    """Read a function written by `f.dump(path)`; damaged or foreign files raise `DumpError` (a ValueError)."""
    return LoadedFunction(read_dump(path), os.fspath(path))
