"""Save and load a shared model without losing the sharing (safetensors, each shared tensor once)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .actions import layer_actions
from .actions.base import parent_of

__all__ = ["save_shared", "load_shared", "read_plan", "rebuild_modules"]


def save_shared(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write ``model`` to one safetensors file: each parameter storage once, plus the plan that rebuilds
    the sharing (aliases of tied tensors, the modules each action built) in the file's metadata. ``dtype``:
    floating parameters are written in it (None: as they are); buffers keep their own."""
    from safetensors.torch import save_file

    canonical: dict[int, str] = {}
    aliases: dict[str, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        key = id(p)
        if key in canonical:
            aliases[name] = canonical[key]
        else:
            canonical[key] = name
            t = p.detach()
            tensors[name] = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
    state = model.state_dict()  # buffers as their modules give them (a quantized layer: its codes as stored)
    for name, b in model.named_buffers():
        tensors.setdefault(name, state.get(name, b).detach().contiguous())  # non-persistent ones: as they are
    plan: dict = {"format": "colorshare-shared-v1", "aliases": aliases}
    built = {n: a for n, m in model.named_modules() for a in layer_actions() if type(m) is a.layer}
    # a layer made of other layers (lowrank's two QuantLinear) is one entry: its parts are rebuilt with it
    outer = {n: a for n, a in built.items() if not any(n.startswith(o + ".") for o in built if o != n)}
    mods = dict(model.named_modules())
    for action in layer_actions():  # each module an action built: its own entry, under the action's name
        plan[action.name] = {n: action.plan_entry(mods[n]) for n, a in outer.items() if a is action}
    save_file(tensors, str(path), metadata={"colorshare": json.dumps(plan), "format": "pt"})


def read_plan(path: str | Path) -> dict:
    """The sharing plan in the metadata of a file written by :func:`save_shared`; ValueError if it has none."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - not a safetensors file: say which
        raise ValueError(f"{path} is not a safetensors file: {exc}") from None
    if "colorshare" not in meta:
        raise ValueError(f"{path} was not written by colorshare.torch.save_shared (no sharing plan)")
    return json.loads(meta["colorshare"])


def rebuild_modules(model: nn.Module, plan: dict, source: str) -> None:
    """Put an empty module of each action's layer in place of every module the plan names (on the module's
    own device and dtype: meta stays meta). ValueError naming a layer the model lacks or has in another shape."""
    mods = dict(model.named_modules())
    for action in layer_actions():
        for name, spec in plan.get(action.name, {}).items():
            if name not in mods:
                raise ValueError(f"layer {name!r} of {source} is not a module of this model ({type(model).__name__})")
            parent, attr = parent_of(model, name)
            setattr(parent, attr, action.rebuild(spec, mods[name], name, source))


def load_shared(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_shared` into ``model`` (a fresh model of the same architecture):
    rebuild the modules each action built, re-tie the aliased parameters (the same ``nn.Parameter`` again),
    then copy the values. Returns ``model``. Raises ValueError if the file was not written by save_shared or a
    name is missing from the model."""
    from safetensors.torch import load_file

    plan = read_plan(path)
    tensors = load_file(str(path))
    rebuild_modules(model, plan, str(path))
    params = dict(model.named_parameters(remove_duplicate=False))
    for alias, canon in plan["aliases"].items():
        if alias not in params or canon not in params:
            raise ValueError(f"parameter {alias if alias not in params else canon!r} is not in this model")
        owner, attr = parent_of(model, alias)
        setattr(owner, attr, params[canon])
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, t in tensors.items():
            dest = params.get(name, buffers.get(name))
            if dest is None:
                raise ValueError(f"tensor {name!r} of the file is not in this model")
            if tuple(dest.shape) != tuple(t.shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)} in {path} but {tuple(dest.shape)} in "
                                 "this model: is it the same architecture?")
            dest.copy_(t.to(dest.device))
    return model
