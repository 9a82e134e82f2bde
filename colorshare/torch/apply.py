"""Solution -> model: each class built by its action (one tensor, a shared basis, a shared input factor); count
stored parameters."""

from __future__ import annotations

import copy

from torch import nn

from ..solvers.solution import Solution
from .actions import SharedLinear, get_action
from .actions.base import parent_of as _parent
from .actions.basis import BasisLinear
from .actions.input import InputFactorLinear
from .model_graph import ModelGraph
from .quant import QuantLinear
from .targets import layer_shape

__all__ = ["BasisLinear", "InputFactorLinear", "QuantLinear", "apply_coloring", "quantize_classes",
           "stored_parameters", "stored_memory", "untie"]


def stored_parameters(model: nn.Module) -> int:
    """Elements in the model's unique parameter storages: a tensor shared by several modules counts once."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        st = p.untyped_storage()
        seen[st.data_ptr()] = st.nbytes() // p.element_size()
    return sum(seen.values())


def stored_memory(model: nn.Module, unit: str = "parameters") -> int:
    """What the model stores in ``unit``: ``"parameters"`` (:func:`stored_parameters`), or ``"bytes"``, each
    unique parameter storage at 2 bytes a value (16 bits) plus every quantized layer's codes, scales and zero
    points as stored (:class:`~colorshare.torch.quant.QuantLinear`)."""
    if unit == "parameters":
        return stored_parameters(model)
    if unit != "bytes":
        raise ValueError(f"unit must be 'parameters' or 'bytes', got {unit!r}")
    packed = sum(m.stored_bytes() for m in model.modules() if isinstance(m, QuantLinear))
    return 2 * stored_parameters(model) + packed


def apply_coloring(model: nn.Module, graph: ModelGraph, solution: Solution, inplace: bool = False,
                   quantize: bool = True) -> nn.Module:
    """Make ``model`` store what ``solution`` chose for ``graph``'s layers; returns the changed model.

    Each class is built by its action (:mod:`colorshare.torch.actions`). tie: the members' weights become the
    SAME ``nn.Parameter`` (the curvature-weighted mean), so ``model.parameters()``, ``state_dict`` and saved
    files hold it once; medoid: the members use the representative's own parameter; basis: each member becomes
    a :class:`BasisLinear` holding the class's shared basis and its own coefficients; input: each member
    becomes an :class:`InputFactorLinear` holding the shared input factor; dense: unchanged. Biases stay per
    layer. With ``inplace=False`` (default) the model is deep-copied first.

    Afterwards ``stored_memory(new, graph.unit) == stored_memory(model, graph.unit) - graph.dense_size +
    solution.memory`` (in parameters: ``stored_parameters``). A layer alone stored in fewer bits (a graph that
    counts bytes) becomes a :class:`~colorshare.torch.quant.QuantLinear`; ``quantize=False`` keeps such classes in
    16 bits (to heal them first; :func:`quantize_classes` rounds them afterwards).

    Raises ValueError if the solution has no coloring or belongs to another graph, if a layer of the graph
    is missing from the model or has another shape (naming the layer), or if a tie or medoid class spans
    devices (a model spread by accelerate's ``device_map``; the graph of such a model offers none).
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
    builders = [get_action(cl.action) for cl in solution.classes]  # an unknown action fails before any change
    here = dict(model.named_modules())
    for cl, action in zip(solution.classes, builders):
        if len(cl.members) > 1 and all(graph.module_names[i] in here for i in cl.members):
            action.check_placement(graph, cl, here)  # a class that cannot sit where its members do: before any change
    target = model if inplace else copy.deepcopy(model)
    mods = dict(target.named_modules())
    for name, shape in zip(graph.module_names, graph.shapes):
        if name not in mods:
            raise ValueError(f"layer {name!r} of the graph is not a module of this model")
        w = getattr(mods[name], "weight", None)
        have = None if w is None else layer_shape(mods[name])
        if have != shape:
            raise ValueError(f"layer {name!r} has weight shape {have}, the graph expects {shape}")
    for cl, action in zip(solution.classes, builders):
        (action.apply if quantize else action.apply_float)(graph, cl, target, mods)
    return target


def quantize_classes(model: nn.Module, graph: ModelGraph, solution: Solution) -> nn.Module:
    """Round, in place, the classes of a model built with ``apply_coloring(..., quantize=False)`` to the
    bit-widths ``solution`` chose, from the tensors the model holds now (healed ones, GPTQ under the layers'
    input covariances). Returns ``model``."""
    mods = dict(model.named_modules())
    for cl in solution.classes:
        get_action(cl.action).requantize(graph, cl, model, mods)
    return model


def untie(model: nn.Module) -> nn.Module:
    """Undo sharing in place: every shared weight becomes an independent copy, every BasisLinear an
    ``nn.Linear`` with weight U @ C. The values stay; only the storage stops being shared."""
    seen: set[int] = set()
    for name, mod in list(model.named_modules()):
        if isinstance(mod, SharedLinear):
            parent, attr = _parent(model, name)
            setattr(parent, attr, mod.to_linear())
            continue
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if w is None:
            continue
        if id(w) in seen:
            mod.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
        seen.add(id(w))
    return model
