"""Solution -> model: tie members to ONE nn.Parameter, or give them a shared basis; count stored parameters."""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from torch import nn

from ..solvers.solution import Solution
from .graph import ModelGraph

__all__ = ["BasisLinear", "InputFactorLinear", "apply_coloring", "stored_parameters", "untie"]


class BasisLinear(nn.Module):
    """``y = x C^T U^T + b``: a linear layer whose weight U @ C uses a basis U shared across its class."""

    def __init__(self, basis: nn.Parameter, coeff: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.basis = basis
        self.coeff = coeff
        self.bias = bias
        self.in_features = coeff.shape[1]
        self.out_features = basis.shape[0]

    @property
    def rank(self) -> int:
        return self.coeff.shape[0]

    @property
    def weight(self) -> torch.Tensor:
        return self.basis @ self.coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.coeff.T) @ self.basis.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class _FactorCache:
    """``x @ B^T`` for the input a group of layers was last called with: the first member of the group
    computes it, the others (fed the very same tensor, as q/k/v and gate/up are) reuse it. ``computed`` counts
    the products (a test counts one per forward)."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.ref: Any = None
        self.value: torch.Tensor | None = None
        self.computed = 0

    def __deepcopy__(self, memo: dict) -> _FactorCache:
        return _FactorCache()  # a copy starts empty (the cached product belongs to the original's tensors)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]

    def get(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        key = (x.data_ptr(), tuple(x.shape), x._version, factor._version, torch.is_grad_enabled())
        if self.value is None or self.key != key or self.ref() is not x:
            self.value = x @ factor.T
            self.key, self.ref = key, weakref.ref(x)
            self.computed += 1
        return self.value


def factor_cache(factor: nn.Parameter) -> _FactorCache:
    """The cache of the layers that share ``factor``: kept on the parameter itself, so that the members of a
    group share it (also after load_shared re-ties them, and in a deep copy)."""
    cache = getattr(factor, "_colorshare_cache", None)
    if cache is None:
        cache = _FactorCache()
        factor._colorshare_cache = cache  # type: ignore[attr-defined]
    return cache


class InputFactorLinear(nn.Module):
    """``y = (x B^T) A^T + b``: a linear layer whose weight A @ B shares its input-side factor B (rank x d_in)
    with the other layers fed the same input; ``x B^T`` is computed once for all of them per forward."""

    def __init__(self, factor: nn.Parameter, coeff: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.factor = factor
        self.coeff = coeff
        self.bias = bias
        self.in_features = factor.shape[1]
        self.out_features = coeff.shape[0]

    @property
    def rank(self) -> int:
        return self.factor.shape[0]

    @property
    def weight(self) -> torch.Tensor:
        return self.coeff @ self.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = factor_cache(self.factor).get(x, self.factor) @ self.coeff.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank} (shared input)"


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def stored_parameters(model: nn.Module) -> int:
    """Elements in the model's unique parameter storages: a tensor shared by several modules counts once."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        st = p.untyped_storage()
        seen[st.data_ptr()] = st.nbytes() // p.element_size()
    return sum(seen.values())


def apply_coloring(model: nn.Module, graph: ModelGraph, solution: Solution, inplace: bool = False) -> nn.Module:
    """Make ``model`` store what ``solution`` chose for ``graph``'s layers; returns the changed model.

    tie: the members' weights become the SAME ``nn.Parameter`` (the curvature-weighted mean), so
    ``model.parameters()``, ``state_dict`` and saved files hold it once; medoid: the members use the
    representative's own parameter; basis: each member becomes a :class:`BasisLinear` holding the class's
    shared basis and its own coefficients; dense: unchanged. Biases stay per layer. With ``inplace=False``
    (default) the model is deep-copied first.

    Afterwards ``stored_parameters(new) == stored_parameters(model) - graph.dense_size + solution.memory``.

    Raises ValueError if the solution has no coloring or belongs to another graph, or if a layer of the graph
    is missing from the model or has another shape (naming the layer).
    """
    if not isinstance(graph, ModelGraph):
        raise TypeError("graph must come from colorshare.torch.build_graph")
    if solution.colors is None:
        raise ValueError(f"the solution has no coloring (status {solution.status.value!r})")
    if len(solution.colors) != graph.n or sum(len(c.members) for c in solution.classes) != graph.n:
        raise ValueError(f"the solution colors {len(solution.colors)} layers but the graph has {graph.n}")
    for cl in solution.classes:
        if len(cl.members) > 1 and not graph.is_group(cl.members):
            raise ValueError(f"the solution's class {[graph.names[i] for i in cl.members]} is not a valid group "
                             "of this graph (is it a solution for another graph?)")
    target = model if inplace else copy.deepcopy(model)
    mods = dict(target.named_modules())
    for name, shape in zip(graph.module_names, graph.shapes):
        if name not in mods:
            raise ValueError(f"layer {name!r} of the graph is not a module of this model")
        w = getattr(mods[name], "weight", None)
        if w is None or tuple(w.shape) != shape:
            raise ValueError(f"layer {name!r} has weight shape {None if w is None else tuple(w.shape)}, "
                             f"the graph expects {shape}")
    for cl in solution.classes:
        names = [graph.module_names[i] for i in cl.members]
        first = mods[names[0]].weight
        if cl.action == "dense":
            continue
        if cl.action in ("tie", "medoid"):
            if cl.action == "tie":
                W = graph.tie_center(cl.members).reshape(first.shape)
                shared = nn.Parameter(W.to(dtype=first.dtype, device=first.device), requires_grad=first.requires_grad)
            else:
                shared = mods[graph.module_names[cl.representative]].weight  # type: ignore[index]
            for n in names:
                mods[n].weight = shared
        elif cl.action == "basis":
            rank = int((cl.params or {})["rank"])
            U, Cs = graph.basis(cl.members, rank)
            basis = nn.Parameter(U.to(dtype=first.dtype, device=first.device))
            for n, C in zip(names, Cs):
                old = mods[n]
                parent, attr = _parent(target, n)
                coeff = nn.Parameter(C.to(dtype=first.dtype, device=first.device))
                setattr(parent, attr, BasisLinear(basis, coeff, old.bias))
        elif cl.action == "input":
            B, As = graph.input_factors(cl.members, int((cl.params or {})["rank"]))
            factor = nn.Parameter(B.to(dtype=first.dtype, device=first.device))
            for n, A in zip(names, As):
                old = mods[n]
                w = old.weight
                parent, attr = _parent(target, n)
                coeff = nn.Parameter(A.to(dtype=w.dtype, device=w.device))
                setattr(parent, attr, InputFactorLinear(factor, coeff, old.bias))
        else:
            raise ValueError(f"unknown action {cl.action!r} in the solution")
    return target


def untie(model: nn.Module) -> nn.Module:
    """Undo sharing in place: every shared weight becomes an independent copy, every BasisLinear an
    ``nn.Linear`` with weight U @ C. The values stay; only the storage stops being shared."""
    seen: set[int] = set()
    for name, mod in list(model.named_modules()):
        if isinstance(mod, (BasisLinear, InputFactorLinear)):
            lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None,
                            device=mod.coeff.device, dtype=mod.coeff.dtype)
            with torch.no_grad():
                lin.weight.copy_(mod.weight)
                if mod.bias is not None:
                    lin.bias = mod.bias
            parent, attr = _parent(model, name)
            setattr(parent, attr, lin)
            continue
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if w is None:
            continue
        if id(w) in seen:
            mod.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
        seen.add(id(w))
    return model
