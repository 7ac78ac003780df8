"""GradManager: record a tape of primitive applications, then run it backward.

While recording, the manager sits in `dispatch.recorders` and keeps every
primitive application whose inputs depend on an attached tensor (float
results only: integer and bool values carry no gradient). `backward(y, dy)`
walks that tape in reverse with the VJP rules of `vjp.py`, which are
ordinary primitive calls, so a traced step records its backward pass too.
Gradients accumulate into `param.grad` (a new Tensor, summed with any
existing one) after the attached callbacks have seen them. Higher-order
gradients (differentiating a backward pass) are not supported: an op of a
backward pass that depends on a tensor another active manager tracks raises.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable, Sequence

from ..core import dispatch
from ..core.dispatch import apply1
from ..functional.shape import detach
from ..tensor import Tensor, as_tensor
from .vjp import NON_DIFFERENTIABLE, VJP, needing

Callback = Callable[[Tensor, Tensor], Tensor | None]

# Managers currently running a backward pass (to catch higher-order use).
_backward_depth = 0


class _Entry:
    __slots__ = ("primitive", "attrs", "inputs", "outputs")

    def __init__(self, primitive: str, attrs: dict[str, Any], inputs: Sequence[Tensor], outputs: Sequence[Tensor]):
        self.primitive, self.attrs, self.inputs, self.outputs = primitive, attrs, tuple(inputs), tuple(outputs)


class _TapeRecorder:
    """The object a manager puts in `dispatch.recorders` (its `record` hook; the
    manager's own `record()` is MegEngine's start-recording call)."""

    __slots__ = ("manager",)

    def __init__(self, manager: "GradManager") -> None:
        self.manager = manager

    def record(self, primitive: str, attrs: dict[str, Any], inputs: Sequence[Tensor],
               outputs: Sequence[Tensor]) -> None:
        self.manager._record_op(primitive, attrs, inputs, outputs)


class GradManager:
    """Computes gradients of attached tensors (MegEngine's `GradManager`).

        gm = GradManager().attach(model.parameters())
        with gm:
            loss = loss_fn(model(x), y)
            gm.backward(loss)
    """

    def __init__(self) -> None:
        self._attached: "weakref.WeakValueDictionary[int, Tensor]" = weakref.WeakValueDictionary()
        self._callbacks: dict[int, list[Callback]] = {}
        self._tape: list[_Entry] = []
        self._tracked: dict[int, Tensor] = {}  # id -> tensor for tape outputs (kept alive: ids stay unique)
        self._recording = False
        self._recorder = _TapeRecorder(self)

    # ------------------------------------------------------------- attaching
    def attach(self, params: Tensor | Iterable[Tensor], callbacks: Callback | Iterable[Callback] | None = None
               ) -> "GradManager":
        """Track gradients of `params`; `callbacks(param, grad)` may return a replacement grad."""
        params = [params] if isinstance(params, Tensor) else list(params)
        if callbacks is None:
            callbacks = []
        elif callable(callbacks):
            callbacks = [callbacks]
        else:
            callbacks = list(callbacks)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"GradManager.attach: expected Tensors, got {type(p).__name__}")
            if not p._type.dtype.is_float:
                raise TypeError(f"GradManager.attach: only float tensors have gradients, got {p.dtype}")
            self._attached[id(p)] = p
            self._callbacks.setdefault(id(p), []).extend(callbacks)
        return self

    def attached_tensors(self) -> list[Tensor]:
        return list(self._attached.values())

    def _is_tracked(self, t: Tensor) -> bool:
        key = id(t)
        return self._tracked.get(key) is t or self._attached.get(key) is t

    # ------------------------------------------------------------- recording
    def record(self) -> "GradManager":
        """Start recording operations on attached tensors."""
        if self._recording:
            raise RuntimeError("GradManager.record: this manager is already recording")
        self._recording = True
        dispatch.recorders.append(self._recorder)
        return self

    def release(self) -> None:
        """Stop recording and drop the tape."""
        if self._recording:
            self._recording = False
            dispatch.recorders[:] = [r for r in dispatch.recorders if r is not self._recorder]
        self._tape = []
        self._tracked = {}

    def __enter__(self) -> "GradManager":
        return self.record()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _record_op(self, primitive: str, attrs: dict[str, Any], inputs: Sequence[Tensor],
                  outputs: Sequence[Tensor]) -> None:
        if not any(self._is_tracked(t) for t in inputs):
            return
        if _backward_depth:
            raise NotImplementedError(
                f"GradManager: a backward pass applies {primitive} to a tensor that a recording GradManager "
                "tracks; higher-order gradients are not supported (call backward outside other managers' "
                "recording, or detach)"
            )
        if primitive in NON_DIFFERENTIABLE:
            return
        outputs = [o for o in outputs if o._type.dtype.is_float]
        if not outputs:
            return
        self._tape.append(_Entry(primitive, attrs, inputs, outputs))
        for o in outputs:
            self._tracked[id(o)] = o

    # ------------------------------------------------------------- backward
    def backward(self, y: Tensor | Sequence[Tensor] | None = None, dy: Any = None) -> None:
        """Accumulate d(sum(dy * y))/dp into `p.grad` for every attached p; then release the tape.

        `dy` defaults to 1 for a one-element `y`; a larger `y` needs `dy` of its shape.
        """
        global _backward_depth
        if y is None:
            raise ValueError("GradManager.backward: pass the tensor to differentiate, e.g. gm.backward(loss)")
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        dys = [None] * len(ys) if dy is None else (list(dy) if isinstance(dy, (list, tuple)) else [dy])
        if len(dys) != len(ys):
            raise ValueError(f"GradManager.backward: {len(ys)} tensor(s) but {len(dys)} dy")
        if not self._recording:
            raise RuntimeError(
                "GradManager.backward: nothing was recorded; compute the loss inside `with gm:` "
                "(or between gm.record() and gm.backward())"
            )
        # Our own tape must not record the backward pass.
        dispatch.recorders[:] = [r for r in dispatch.recorders if r is not self._recorder]
        self._recording = False
        _backward_depth += 1
        try:
            cotangents: dict[int, Tensor] = {}
            for yi, dyi in zip(ys, dys):
                seed = self._seed(yi, dyi)
                if self._is_tracked(yi):
                    self._accumulate(cotangents, yi, seed)
            for entry in reversed(self._tape):
                g = cotangents.pop(id(entry.outputs[0]), None)
                if g is None:
                    continue
                self._visit(entry, g, cotangents)
            for key, param in list(self._attached.items()):
                grad = cotangents.get(key)
                if grad is None:
                    continue
                for callback in self._callbacks.get(key, []):
                    replaced = callback(param, grad)
                    if replaced is not None:
                        grad = replaced
                # A fresh Tensor object per parameter: cotangents are shared (y = a + b gives a and b
                # one object, and dy is the caller's), and a later grad._reset must not reach the others.
                param.grad = detach(grad) if param.grad is None else apply1("add", param.grad, grad)
        finally:
            _backward_depth -= 1
            self.release()

    def _seed(self, y: Tensor, dy: Any) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"GradManager.backward: y must be a Tensor, got {type(y).__name__}")
        if not y._type.dtype.is_float:
            raise TypeError(f"GradManager.backward: y must be a float tensor, got {y.dtype}")
        if dy is None:
            if y.size != 1:
                raise ValueError(
                    f"GradManager.backward: y has shape {y.shape}; a non-scalar y needs dy of that shape "
                    "(or reduce it first, e.g. loss.sum())"
                )
            seed = apply1("constant", value=1.0, shape=y.shape, dtype=y._type.dtype.name)
        else:
            seed = as_tensor(dy, y)
            if seed.shape != y.shape:
                raise ValueError(f"GradManager.backward: dy shape {seed.shape} does not match y shape {y.shape}")
            if seed._type.dtype != y._type.dtype:
                seed = apply1("cast", seed, dtype=y._type.dtype.name)
        return seed

    def _visit(self, entry: _Entry, g: Tensor, cotangents: dict[int, Tensor]) -> None:
        rule = VJP.get(entry.primitive)
        if rule is None:
            raise NotImplementedError(
                f"GradManager.backward: primitive {entry.primitive!r} has no VJP rule; "
                "add one to jitgine/autodiff/vjp.py"
            )
        mask = [x._type.dtype.is_float and self._is_tracked(x) for x in entry.inputs]
        with needing(mask):
            grads = rule(entry.attrs, entry.inputs, entry.outputs, g)
        for x, gx in zip(entry.inputs, grads):
            if gx is None or not x._type.dtype.is_float or not self._is_tracked(x):
                continue
            self._accumulate(cotangents, x, gx)

    @staticmethod
    def _accumulate(cotangents: dict[int, Tensor], x: Tensor, g: Tensor) -> None:
        if g.shape != x.shape:
            raise AssertionError(f"VJP produced a cotangent of shape {g.shape} for a tensor of shape {x.shape}")
        previous = cotangents.get(id(x))
        cotangents[id(x)] = g if previous is None else apply1("add", previous, g)
