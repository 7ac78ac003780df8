"""Optimizer base: parameter groups, gradient clearing, state (de)serialisation.

Updates are F ops on Tensors applied with `param._reset(new)` (slots too),
so the same `step()` runs eagerly and, under trace, becomes state updates of
the compiled step. The learning rate enters as a 0-d Tensor held per group
(kept in sync with `group["lr"]`), so changing it never needs a retrace; the
other hyperparameters are constants of a traced step, guarded: changing one
(momentum, betas, weight decay) retraces on the next call.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import functional as F
from ..core import dispatch
from ..tensor import Parameter, Tensor


class ParamGroup(dict):
    """A parameter group: a dict of hyperparameters plus "params"; "lr" is mirrored in 0-d Tensors
    (one per parameter dtype, so float64 parameters do not see a float32-rounded lr)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lr_tensors: dict[np.dtype, Tensor] = {}

    def lr_tensor_for(self, dtype: Any) -> Tensor:
        dtype = np.dtype(dtype)
        if dtype not in self._lr_tensors:
            self._lr_tensors[dtype] = Tensor(np.asarray(float(self["lr"]), dtype))
        return self._lr_tensors[dtype]

    @property
    def lr_tensor(self) -> Tensor:
        return self.lr_tensor_for(np.float32)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "lr":
            for dtype, tensor in getattr(self, "_lr_tensors", {}).items():
                tensor._reset(Tensor(np.asarray(float(value), dtype)))


def l2_decayed(grad: Tensor, param: Tensor, weight_decay: float) -> Tensor:
    """g + wd * p (L2 weight decay folded into the gradient), or g itself when wd is 0."""
    return F.add(grad, F.mul(param, weight_decay)) if weight_decay else grad


def zeros_slot(param: Tensor) -> Tensor:
    """A new state slot of zeros shaped like `param`, as concrete storage (not an op), so that a slot
    first created inside a traced step is captured state that `_reset` can update."""
    return Tensor(np.zeros(param.shape, param.dtype))


class Optimizer:
    """Subclass and implement `_update(param, grad, group, state)` in F ops."""

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], defaults: dict[str, Any]) -> None:
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[ParamGroup] = []
        self.state: dict[int, dict[str, Tensor]] = {}
        seen: set[int] = set()
        for raw in groups:
            group_params = [raw["params"]] if isinstance(raw["params"], Tensor) else list(raw["params"])
            for p in group_params:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: expected Parameters, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
                seen.add(id(p))
            group = ParamGroup({**defaults, **{k: v for k, v in raw.items() if k != "params"}, "params": group_params})
            self._check_group(group)
            self.param_groups.append(group)

    def _check_group(self, group: ParamGroup) -> None:
        if float(group["lr"]) < 0:
            raise ValueError(f"{type(self).__name__}: lr must be non-negative, got {group['lr']}")

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def clear_grad(self) -> "Optimizer":
        """Set every parameter's grad to None."""
        for p in self._params():
            p.grad = None
        return self

    zero_grad = clear_grad

    def step(self) -> "Optimizer":
        """Update every parameter that has a gradient; returns self (for `opt.step().clear_grad()`)."""
        if dispatch.tracer is not None:  # hyperparameters other than lr become constants of the graph
            dispatch.tracer.guard(f"{type(self).__name__} hyperparameters", self._hyperparameters)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if p.grad.dtype == p.dtype else p.grad.astype(p.dtype)
                self._update(p, grad, group, self.state.setdefault(id(p), {}))
        return self

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def _hyperparameters(self) -> tuple:
        """Every group's settings but the parameters and lr (which a traced step reads as a tensor)."""
        return tuple(tuple(sorted((k, v) for k, v in group.items() if k not in ("params", "lr", "initial_lr")))
                     for group in self.param_groups)

    @staticmethod
    def _lr(group: ParamGroup, like: Tensor) -> Tensor:
        return group.lr_tensor_for(like.dtype)

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters per group (params as indices) and NumPy copies of every slot."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[key]: {name: t.numpy() for name, t in slots.items()}
                 for key, slots in self.state.items() if key in index}
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        groups = state["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved groups do not match this optimizer's "
                             "(different number of groups or parameters per group)")
        params = self._params()
        for saved, own in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    own[key] = value
        previous, self.state = self.state, {}
        for i, slots in state["state"].items():
            p = params[int(i)]
            own = previous.get(id(p), {})
            self.state[id(p)] = {name: _load_slot(own.get(name), value) for name, value in slots.items()}


def _load_slot(slot: Tensor | None, value: Any) -> Tensor:
    """`value` in the existing slot tensor when it fits (in place: a traced step captured that tensor and
    keeps updating it), else in a new one."""
    array = np.array(value, copy=True)
    if slot is not None and slot.shape == array.shape and slot.dtype == array.dtype:
        slot._reset(Tensor(array))
        return slot
    return Tensor(array)
