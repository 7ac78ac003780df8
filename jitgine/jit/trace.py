"""`@trace`: record a function once into one IR graph, compile it, then run
it as one native call per invocation.

Recording: while the function runs under a `Tracer`, `apply()` adds nodes to
a graph instead of computing. Arguments become graph inputs; any eager
tensor the function touches (parameters, optimizer slots, BatchNorm
statistics, gradients) is captured as a further input, bound to that
tensor's current storage at every call. `Tensor._reset(value)` (how
optimizers and BatchNorm update state) becomes an `assign` at the end of the
graph, which writes the new value into the state tensor's own buffer (the
producing kernel writes it there directly where codegen.memory finds that safe).

Running: the compiled graph owns its arena and pointer array; a call binds
the argument arrays, rebinds only state tensors whose array eager code
replaced, and makes one native call. Returned tensors and `.grad`s are arrays
the caller owns: last step's array is reused only when nothing references it.

A call whose signature (argument shapes and dtypes, Python scalar values,
module train/eval state) has not been seen is traced and compiled anew; the
reason is logged and counted in `retraces`.
"""

from __future__ import annotations

import functools
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from codegen.compiler import CompiledGraph, compile_graph
from ir.graph import GraphBuilder, Value
from ir.passes import PassManager
from ir.types import TensorType

from ..core import dispatch, modes
from ..tensor import Tensor
from . import observe
from .inspection import Inspectable, Program

PIPELINE = ["simplify", "constant_fold", "cse", "dce", "fuse_elementwise", "fuse_epilogue", "dce"]


class TraceError(RuntimeError):
    """A traced function did something a compiled graph cannot reproduce."""


def _symbolic(value: Value) -> Tensor:
    tensor = Tensor._wrap(None)
    tensor._symbol = value
    return tensor


class _GradOf:
    """Stands for `owner.grad` among an executable's captured state when a traced backward pass
    accumulated into a gradient that existed at trace time: the step must read the gradient the
    owner has at each call, and that is a new Tensor object after every step."""

    grad = None  # a gradient has no gradient

    def __init__(self, owner: Tensor) -> None:
        self.owner = owner

    @property
    def _array(self) -> np.ndarray:
        return self.owner.grad._array

    @_array.setter
    def _array(self, array: np.ndarray) -> None:
        self.owner.grad._array = array

    @property
    def _type(self) -> TensorType:
        return self.owner.grad._type


class Tracer:
    """Receives every `apply()` while a function is being recorded."""

    def __init__(self, name: str):
        self.builder = GraphBuilder(name)
        self.captured: dict[int, tuple[Tensor, Value]] = {}  # id(tensor) -> (tensor, graph input)
        self.grads_before: dict[int, Tensor | None] = {}  # id(tensor) -> its .grad when first captured
        self.current: dict[int, Value] = {}  # latest value of a state tensor after _reset
        self.updates: dict[int, tuple[Tensor, Value]] = {}
        self.argument_inputs: list[Value] = []
        self.primitives = 0
        self.guards: list[tuple[str, Callable[[], Any], Any]] = []

    def guard(self, what: str, read: Callable[[], Any]) -> None:
        """The graph depends on the Python value `read()` returns now (e.g. an optimizer's momentum,
        baked in as a constant): a later call with a different value retraces instead of running
        stale code."""
        self.guards.append((what, read, read()))

    def value_of(self, tensor: Tensor) -> Value:
        key = id(tensor)
        if key in self.current:
            return self.current[key]
        if tensor._symbol is not None:
            return tensor._symbol
        if key not in self.captured:
            value = self.builder.input(tensor._type)
            owner = next((t for t, _ in self.captured.values() if t.grad is tensor), None)
            self.captured[key] = (tensor if owner is None else _GradOf(owner), value)
            self.grads_before[key] = tensor.grad
        return self.captured[key][1]

    def undo(self) -> None:
        """After a failed trace: captured tensors get back the gradients they had (a traced backward
        pass left symbolic ones, which would break every later eager step)."""
        for key, (tensor, _) in self.captured.items():
            if tensor.grad is not None and tensor.grad._symbol is not None:
                tensor.grad = self.grads_before[key]

    def apply(self, primitive: str, attrs: dict[str, Any], inputs: Sequence[Tensor],
              types: list[TensorType]) -> list[Tensor]:
        self.primitives += 1
        node = self.builder.add(primitive, [self.value_of(t) for t in inputs], **attrs)
        return [_symbolic(r) for r in node.results]

    def reset(self, tensor: Tensor, value: Tensor) -> None:
        new = self.value_of(value)
        self.value_of(tensor)  # make sure the state tensor is an input
        self.current[id(tensor)] = new
        self.updates[id(tensor)] = (tensor, new)

    def value_error(self, what: str) -> TraceError:
        return TraceError(
            f"{what} inside a traced function: a traced step cannot read tensor values, because the "
            "compiled graph replays the same operations every call. Return the tensor from the "
            "function and read it outside, or use F.where instead of Python control flow."
        )


@dataclass
class Executable:
    """One compiled signature of a traced function."""

    compiled: CompiledGraph
    n_args: int
    captured: list[Tensor]
    updated: list[Tensor]  # state tensors written in place by assign
    output_count: int
    grads: list[Tensor]  # captured tensors whose .grad is a graph output
    structure: Callable[[list[Tensor]], Any]
    primitives: int
    stages: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # seconds spent tracing, in the passes, compiling
    grads_present: tuple[bool, ...] = ()  # per captured tensor: had a .grad when traced
    guards: list = field(default_factory=list)  # (what, read, value at trace time): Tracer.guard

    def stale_guard(self) -> str | None:
        """Why this executable no longer fits (a guarded Python value changed), or None."""
        for what, read, value in self.guards:
            now = read()
            if now != value:
                return f"{what} changed from {value} to {now}"
        return None

    def grads_match(self) -> bool:
        """Is each captured tensor's gradient present now exactly when it was at trace time? (A
        backward pass accumulates into an existing gradient: the graph differs.)"""
        return all((t.grad is not None) == present for t, present in zip(self.captured, self.grads_present))

    def __post_init__(self) -> None:
        self._grad_refs: list[weakref.ref | None] = [None] * len(self.grads)

    def run(self, args: list[np.ndarray]) -> Any:
        """Bind the arguments, rebind state tensors whose array changed, and make the one native call.

        Returned tensors and gradients are arrays the caller owns (see
        `CompiledGraph.claim_outputs`): a kept loss never changes on the next step.
        """
        compiled = self.compiled
        for i, array in enumerate(args):
            compiled.bind(i, array)
        for k, tensor in enumerate(self.captured):
            if tensor._array is not compiled.bound(self.n_args + k):
                self._bind_state(k, tensor)
        self._release_grads()
        outputs = compiled.claim_outputs()
        compiled.run_bound()
        results = [Tensor._wrap(a) for a in outputs[:self.output_count]]
        for k, (tensor, array) in enumerate(zip(self.grads, outputs[self.output_count:])):
            tensor.grad = Tensor._wrap(array)
            self._grad_refs[k] = weakref.ref(tensor.grad)
        return self.structure(results)

    def _bind_state(self, k: int, tensor: Tensor) -> None:
        """State is updated in place (or read while others are): it must own contiguous, writable
        storage that no other bound state shares. Runs only when eager code replaced the array."""
        array = tensor._array
        slot = self.n_args + k
        shared = any(self.compiled.bound(self.n_args + j) is array for j in range(len(self.captured)) if j != k)
        if shared or not (array.flags.c_contiguous and array.flags.writeable and array.base is None):
            array = np.array(array, copy=True)
            tensor._array = array
        self.compiled.bind(slot, array)

    def _release_grads(self) -> None:
        """Drop last step's gradient wrappers nobody else holds, so their arrays can be reused."""
        for k, tensor in enumerate(self.grads):
            ref = self._grad_refs[k]
            wrapper = ref() if ref is not None else None
            # References: `wrapper` here, `tensor.grad`, and getrefcount's argument.
            # A gradient the next step accumulates into (a _GradOf input) is never released.
            if wrapper is not None and tensor.grad is wrapper and sys.getrefcount(wrapper) == 3 \
                    and not any(isinstance(t, _GradOf) and t.owner is tensor for t in self.captured):
                tensor.grad = None


def _flatten(result: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    """The tensors in a (nested) tuple/list/dict result, and how to rebuild it."""
    if isinstance(result, Tensor):
        return [result], lambda ts: ts[0]
    if result is None:
        return [], lambda ts: None
    if isinstance(result, (tuple, list)):
        parts = [_flatten(r) for r in result]
        counts = [len(p[0]) for p in parts]

        def rebuild(ts):
            out, start = [], 0
            for (_, build), count in zip(parts, counts):
                out.append(build(ts[start:start + count]))
                start += count
            return type(result)(out)

        return [t for p in parts for t in p[0]], rebuild
    if isinstance(result, dict):
        keys = list(result)
        flat, build = _flatten([result[k] for k in keys])
        return flat, lambda ts: dict(zip(keys, build(ts)))
    raise TraceError(f"a traced function may return tensors, tuples, lists and dicts of them; got {type(result)}")


def call_arguments(args: tuple, kwargs: dict, callee: str,
                   error: type[Exception]) -> tuple[list[np.ndarray], list[tuple]]:
    """The array arguments of a call (C-contiguous copies, rank kept) and one entry per argument:
    ("array", shape, dtype) or ("scalar", value); keyword arguments follow in name order."""
    arrays, entries = [], []
    for arg in list(args) + [kwargs[k] for k in sorted(kwargs)]:
        if isinstance(arg, Tensor):
            arg = arg._data(f"passing a tensor to {callee}")
        if isinstance(arg, np.ndarray):
            # The copy also keeps an argument from aliasing a state buffer updated in place.
            array = np.asarray(Tensor(arg)._array, order="C")
            arrays.append(array)
            entries.append(("array", array.shape, array.dtype.str))
        elif isinstance(arg, (bool, int, float, str, type(None))):
            entries.append(("scalar", arg))
        else:
            raise error(f"{callee} takes tensors, arrays and Python scalars; got {type(arg)}")
    return arrays, entries


class trace(Inspectable):
    """Compile a function (e.g. a whole training step) into one native call.

    Use as `@trace` or `@trace(symbolic=True)`. Tensor and NumPy arguments
    are graph inputs; Python scalars are part of the signature.
    """

    def __init__(self, function: Callable | None = None, *, symbolic: bool = True,
                 capture_as_const: bool = False):
        self.symbolic = symbolic
        self.capture_as_const = capture_as_const
        self.executables: dict[tuple, Executable] = {}
        self.retraces = 0
        self.compile_seconds = 0.0
        self.last: Executable | None = None
        self._function = function
        if function is not None:
            functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._function is None:  # @trace(...) with arguments: the first call receives the function
            self._function = args[0]
            functools.update_wrapper(self, self._function)
            return self
        if dispatch.tracer is not None:
            raise TraceError("calling a traced function inside another traced function is not supported")
        arrays, signature = self._signature(args, kwargs)
        executable = self._find(signature)
        if executable is None:
            reason = "first call" if not self.executables else self._why(signature)
            executable = self._trace(args, kwargs, arrays)
            self.executables[signature + (("grads", executable.grads_present),)] = executable
            if reason != "first call":
                self.retraces += 1
            observe.compiled(self, executable, signature, reason)
        self.last = executable
        return executable.run(arrays)

    # ------------------------------------------------------------- inspection
    def _program(self) -> Program:
        """The last compiled signature, for the `Inspectable` methods (IR, kernels, profile, ...)."""
        from .dump import program_of

        if self.last is None:
            raise RuntimeError(f"{self.__name__} has not been traced yet: call it once first")
        return program_of(self, self.last)

    def dump(self, path: str) -> None:
        """Write every compiled signature with its state (weights, optimizer slots) to `path`;
        `jitgine.jit.load(path)` runs it without the Python code (format: jitgine/jit/dump.py)."""
        from .dump import bundle_from_trace, write_dump

        write_dump(bundle_from_trace(self), path)

    def _signature(self, args: tuple, kwargs: dict) -> tuple[list[np.ndarray], tuple]:
        arrays, key = call_arguments(args, kwargs, "a traced function", TraceError)
        key.append(("modules", modes.state()))
        key.append(("kwargs", tuple(sorted(kwargs))))
        return arrays, tuple(key)

    def _find(self, signature: tuple) -> Executable | None:
        """The executable compiled for `signature` whose gradient presence matches the tensors' now."""
        last = self.last
        if last is not None and self.executables.get(signature + (("grads", last.grads_present),)) is last \
                and last.grads_match() and last.stale_guard() is None:
            return last
        for key, executable in self.executables.items():
            if key[:-1] == signature and executable.grads_match() and executable.stale_guard() is None:
                return executable
        return None

    def _why(self, signature: tuple) -> str:
        for key, executable in self.executables.items():
            stale = executable.stale_guard() if key[:-1] == signature and executable.grads_match() else None
            if stale:
                return stale
        if any(key[:-1] == signature for key in self.executables):
            return "gradients appeared or were cleared since the last trace (backward accumulates into them)"
        previous = list(self.executables)[-1]
        for i, (old, new) in enumerate(zip(previous, signature)):
            if old != new and old[0] == "modules":
                return "a module switched between train() and eval()"
            if old != new:
                return f"argument {i} changed from {old[1:]} to {new[1:]}"
        return "new signature"

    def _trace(self, args: tuple, kwargs: dict, arrays: list[np.ndarray]) -> Executable:
        start = time.perf_counter()
        tracer = Tracer(getattr(self._function, "__name__", "traced"))
        symbolic_args, position = [], 0
        for arg in args:
            if isinstance(arg, (Tensor, np.ndarray)):
                value = tracer.builder.input(Tensor._wrap(arrays[position])._type)
                tracer.argument_inputs.append(value)
                symbolic_args.append(_symbolic(value))
                position += 1
            else:
                symbolic_args.append(arg)
        symbolic_kwargs = {}
        for k in sorted(kwargs):
            if isinstance(kwargs[k], (Tensor, np.ndarray)):
                value = tracer.builder.input(Tensor._wrap(arrays[position])._type)
                symbolic_kwargs[k] = _symbolic(value)
                position += 1
            else:
                symbolic_kwargs[k] = kwargs[k]
        dispatch.tracer = tracer
        try:
            result = self._function(*symbolic_args, **symbolic_kwargs)
            flat, structure = _flatten(result)
        except BaseException:
            tracer.undo()
            raise
        finally:
            dispatch.tracer = None
        builder = tracer.builder
        outputs = [tracer.value_of(t) for t in flat]
        captured = [t for t, _ in tracer.captured.values()]
        grads = [t for t in captured if t.grad is not None and t.grad._symbol is not None]
        outputs += [t.grad._symbol for t in grads]
        for tensor, new_value in tracer.updates.values():
            builder.add("assign", [tracer.captured[id(tensor)][1], new_value])
        graph = builder.output(*outputs)
        for key, (tensor, _) in tracer.captured.items():
            if tensor.grad is not None and tensor.grad._symbol is not None:
                # Back to the gradient it had (what the step reads when it accumulates); the graph's
                # output replaces it after every run.
                tensor.grad = tracer.grads_before[key]
        passes = PassManager(PIPELINE)
        traced = time.perf_counter()
        optimized = passes.run(graph)
        optimized_at = time.perf_counter()
        compiled = compile_graph(optimized)
        self.compile_seconds += time.perf_counter() - start
        timings = {"trace": traced - start, "passes": optimized_at - traced, "compile": compiled.compile_seconds}
        present = tuple(tracer.grads_before[key] is not None for key in tracer.captured)
        return Executable(compiled, len(arrays), captured, [t for t, _ in tracer.updates.values()],
                          len(flat), grads, structure, tracer.primitives, passes.stages, timings, present,
                          tracer.guards)
