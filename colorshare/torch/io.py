"""Save and load a shared model without losing the sharing (safetensors, each shared tensor once)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .apply import BasisLinear, InputFactorLinear, _parent

__all__ = ["save_shared", "load_shared"]


def save_shared(model: nn.Module, path: str | Path) -> None:
    """Write ``model`` to one safetensors file: each parameter storage once, plus the plan that rebuilds
    the sharing (aliases of tied tensors, the BasisLinear modules) in the file's metadata."""
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
            tensors[name] = p.detach().contiguous()
    for name, b in model.named_buffers():
        tensors.setdefault(name, b.detach().contiguous())
    basis = {n: {"in": m.in_features, "out": m.out_features, "rank": m.rank, "bias": m.bias is not None}
             for n, m in model.named_modules() if isinstance(m, BasisLinear)}
    inputs = {n: {"in": m.in_features, "out": m.out_features, "rank": m.rank, "bias": m.bias is not None}
              for n, m in model.named_modules() if isinstance(m, InputFactorLinear)}
    plan = {"format": "colorshare-shared-v1", "aliases": aliases, "basis": basis, "input": inputs}
    save_file(tensors, str(path), metadata={"colorshare": json.dumps(plan)})


def load_shared(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_shared` into ``model`` (a fresh model of the same architecture):
    rebuild the BasisLinear modules, re-tie the aliased parameters (the same ``nn.Parameter`` again), then copy
    the values. Returns ``model``. Raises ValueError if the file was not written by save_shared or a name is
    missing from the model."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "colorshare" not in meta:
        raise ValueError(f"{path} was not written by colorshare.torch.save_shared (no sharing plan)")
    plan = json.loads(meta["colorshare"])
    tensors = load_file(str(path))
    mods = dict(model.named_modules())
    for name, spec in plan["basis"].items():
        if name not in mods:
            raise ValueError(f"layer {name!r} of the file is not a module of this model")
        old = mods[name]
        w = getattr(old, "weight", None)
        if w is None or tuple(w.shape) != (spec["out"], spec["in"]):
            raise ValueError(f"layer {name!r} is {spec['out']} x {spec['in']} in {path} but "
                             f"{None if w is None else tuple(w.shape)} in this model: is it the same architecture?")
        dtype, device = w.dtype, w.device
        basis = nn.Parameter(torch.empty(spec["out"], spec["rank"], dtype=dtype, device=device))
        coeff = nn.Parameter(torch.empty(spec["rank"], spec["in"], dtype=dtype, device=device))
        parent, attr = _parent(model, name)
        setattr(parent, attr, BasisLinear(basis, coeff, getattr(old, "bias", None)))
    for name, spec in plan.get("input", {}).items():
        if name not in mods:
            raise ValueError(f"layer {name!r} of the file is not a module of this model")
        old = mods[name]
        w = getattr(old, "weight", None)
        if w is None or tuple(w.shape) != (spec["out"], spec["in"]):
            raise ValueError(f"layer {name!r} is {spec['out']} x {spec['in']} in {path} but "
                             f"{None if w is None else tuple(w.shape)} in this model: is it the same architecture?")
        factor = nn.Parameter(torch.empty(spec["rank"], spec["in"], dtype=w.dtype, device=w.device))
        coeff = nn.Parameter(torch.empty(spec["out"], spec["rank"], dtype=w.dtype, device=w.device))
        parent, attr = _parent(model, name)
        setattr(parent, attr, InputFactorLinear(factor, coeff, getattr(old, "bias", None)))
    params = dict(model.named_parameters(remove_duplicate=False))
    for alias, canon in plan["aliases"].items():
        if alias not in params or canon not in params:
            raise ValueError(f"parameter {alias if alias not in params else canon!r} is not in this model")
        owner, attr = _parent(model, alias)
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
