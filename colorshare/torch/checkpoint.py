"""Save and load a shared model without losing the sharing (safetensors, each shared tensor once).

A file's metadata holds the sharing plan (``format`` :data:`PLAN_FORMAT`): ``aliases`` (a parameter name -> the
stored tensor it reads) and, under each action's name, the modules that action built (module name -> its sizes,
rank, bits). Nothing in a file is trusted: :func:`read_plan` checks the plan's format and every field's type
(:func:`check_plan`), and :func:`check_tensors` checks every tensor a model will hold against the file (present,
shape, dtype, no NaN or inf) before a value is copied; each problem is one ``ValueError`` naming the file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..validation import NONE, POSITIVE_INT, Constraint, OneOf, check
from .actions import layer_actions
from .actions.base import parent_of

__all__ = ["save_shared", "load_shared", "read_plan", "check_plan", "check_tensors", "rebuild_modules",
           "is_shared_file", "PLAN_FORMAT"]

PLAN_FORMAT = "colorshare-shared-v1"
"""The format of the plan :func:`save_shared` writes, and the one :func:`read_plan` reads."""



@dataclass(frozen=True)
class _IntegerIn(Constraint):
    """An integer (not a bool, not 8.0) among ``values``."""

    values: tuple[int, ...]

    @property
    def description(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def holds(self, value: Any) -> bool:
        return type(value) is int and value in self.values


_GROUP = (NONE, POSITIVE_INT)
PLAN_FIELDS: dict[str, tuple[Constraint, ...]] = {
    "in": (POSITIVE_INT,), "out": (POSITIVE_INT,), "rank": (POSITIVE_INT,), "bits": (_IntegerIn((8, 4, 3, 2)),),
    "group": _GROUP, "group_basis": _GROUP, "group_coeff": _GROUP, "bias": (OneOf((True, False)),)}
"""The fields a plan entry may have, and the values each takes."""



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
    plan: dict = {"format": PLAN_FORMAT, "aliases": aliases}
    built = {n: a for n, m in model.named_modules() for a in layer_actions() if type(m) is a.layer}
    # a layer made of other layers (lowrank's two QuantLinear) is one entry: its parts are rebuilt with it
    outer = {n: a for n, a in built.items() if not any(n.startswith(o + ".") for o in built if o != n)}
    mods = dict(model.named_modules())
    for action in layer_actions():  # each module an action built: its own entry, under the action's name
        plan[action.name] = {n: action.plan_entry(mods[n]) for n, a in outer.items() if a is action}
    save_file(tensors, str(path), metadata={"colorshare": json.dumps(plan), "format": "pt"})


def _metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - not a safetensors file: say which
        raise ValueError(f"{path} is not a safetensors file: {_line(exc)}") from None


def is_shared_file(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file with a colorshare sharing plan in its metadata (only the header
    is read; False for a file that is not safetensors)."""
    try:
        return "colorshare" in _metadata(path)
    except ValueError:
        return False


def read_plan(path: str | Path) -> dict:
    """The sharing plan in the metadata of a file written by :func:`save_shared`, checked by
    :func:`check_plan`; ValueError naming the file if it has none, or one that is not JSON or not valid."""
    meta = _metadata(path)
    if "colorshare" not in meta:
        raise ValueError(f"{path} was not written by colorshare.torch.save_shared (no sharing plan)")
    try:
        plan = json.loads(meta["colorshare"])
    except ValueError as exc:
        raise ValueError(f"{path}: its sharing plan is not JSON ({_line(exc)})") from None
    return check_plan(plan, str(path))


def _line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_plan(plan: Any, source: str) -> dict:
    """``plan`` if it is a sharing plan of :data:`PLAN_FORMAT`: a JSON object of known keys, ``aliases`` a
    name -> name map (no alias of an alias), each action's entries a module name -> fields map whose fields
    have the types of :data:`PLAN_FIELDS` (sizes, ranks and groups positive integers, groups dividing their
    inputs, bits one of 8, 4, 3, 2), each module in one entry and none inside another. Else one ValueError
    naming ``source`` and the field."""
    if not isinstance(plan, dict):
        raise ValueError(f"{source}: its sharing plan must be a JSON object, got {_short(plan)}")
    fmt = plan.get("format")
    if fmt != PLAN_FORMAT:
        newer = " (written by a newer colorshare?)" if isinstance(fmt, str) and fmt.startswith("colorshare-") else ""
        raise ValueError(f"{source}: its sharing plan's format must be {PLAN_FORMAT!r}, got {_short(fmt)}{newer}")
    actions = {a.name: a for a in layer_actions()}
    unknown = sorted(str(k) for k in plan if k not in {"format", "aliases", *actions})
    if unknown:
        raise ValueError(f"{source}: its sharing plan has unknown key(s) {', '.join(map(repr, unknown))}; known: "
                         f"format, aliases, {', '.join(actions)} (an action that is not registered here?)")
    aliases = plan.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in aliases.items()):
        raise ValueError(f"{source}: the plan's aliases must map parameter names to tensor names, "
                         f"got {_short(aliases)}")
    for alias, canon in aliases.items():
        if canon == alias or canon in aliases:
            raise ValueError(f"{source}: alias {alias!r} -> {canon!r} does not name a stored tensor "
                             f"({'itself' if canon == alias else 'an alias'})")
    owner: dict[str, str] = {}
    for name in actions:
        entries = plan.get(name, {})
        if not isinstance(entries, dict):
            raise ValueError(f"{source}: the plan's {name!r} entries must map module names to their fields, "
                             f"got {_short(entries)}")
        for module, spec in entries.items():
            if not module or module in owner:
                raise ValueError(f"{source}: module {module!r} has two entries in the plan "
                                 f"({owner[module]!r} and {name!r})" if module else
                                 f"{source}: the plan's {name!r} entries name an empty module")
            owner[module] = name
            _check_entry(source, name, module, spec)
    inside = sorted(m for m in owner if any(m.startswith(o + ".") for o in owner))
    if inside:
        raise ValueError(f"{source}: module {inside[0]!r} of the plan is inside another of its modules")
    return plan


def _check_entry(source: str, action: str, module: str, spec: Any) -> None:
    where = f"{source}: the plan's {action} layer {module!r}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a JSON object of its fields, got {_short(spec)}")
    declared = {a.name: a.plan_fields for a in layer_actions()}.get(action)
    required, optional = (set(declared[0]), set(declared[1])) if declared else (set(), set(spec))
    missing = sorted(required - set(spec))
    if missing:
        raise ValueError(f"{where} lacks field(s) {', '.join(missing)}")
    extra = sorted(str(k) for k in spec if k not in required | optional)
    if extra:
        raise ValueError(f"{where} has unknown field(s) {', '.join(map(repr, extra))}; known: "
                         f"{', '.join(sorted(required | optional))}")
    for field, value in spec.items():
        if field in PLAN_FIELDS:
            check(f"{where} field {field!r}", value, *PLAN_FIELDS[field])
    rank, sizes = spec.get("rank"), [spec[k] for k in ("in", "out") if isinstance(spec.get(k), int)]
    if isinstance(rank, int) and sizes and rank > max(sizes):
        raise ValueError(f"{where} field 'rank' must be at most its larger size ({max(sizes)}), got {rank}")
    for field, inputs in (("group", "in"), ("group_coeff", "in"), ("group_basis", "rank")):
        group, cols = spec.get(field), spec.get(inputs)
        if group and isinstance(cols, int) and cols % group:
            raise ValueError(f"{where} field {field!r} must divide {inputs!r} ({cols}), got {group!r}")


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


def _planned(plan: dict) -> list[str]:
    return [m for a in layer_actions() for m in plan.get(a.name, {})]


def _bad_value(t: torch.Tensor, allow_inf: bool) -> str | None:
    """"NaN" or "inf" if the floating tensor ``t`` holds one (read in chunks: no full-size mask), else None."""
    flat = t.detach().reshape(-1)
    step = 1 << 24
    for i in range(0, flat.numel(), step):
        part = flat[i:i + step]
        if bool(torch.isnan(part).any()):
            return "NaN"
        if not allow_inf and bool(torch.isinf(part).any()):
            return "inf"
    return None


def _check_slot(source: str, key: str, t: torch.Tensor, name: str, slot: torch.Tensor, what: str,
                exact: bool, strict: bool, hint: str) -> None:
    """One tensor of the file against the model's slot ``name`` it goes to: shape, dtype (``exact``: the slot's
    own; else floating for a floating slot), values (NaN never; inf not where ``strict``)."""
    reads = key if key == name else f"{key!r} (which {name!r} reads)"
    label = f"tensor {key!r}" if key == name else f"tensor {reads}"
    if tuple(t.shape) != tuple(slot.shape):
        raise ValueError(f"{label} has shape {tuple(t.shape)} in {source} but {tuple(slot.shape)} in {what}{hint}")
    if exact and t.dtype != slot.dtype:
        raise ValueError(f"{source}: {label} is {t.dtype}; {what} stores it as {slot.dtype}")
    if not exact and slot.is_floating_point() != t.is_floating_point():
        kind = "a floating" if slot.is_floating_point() else f"a {slot.dtype}"
        raise ValueError(f"{source}: {label} is {t.dtype}; {what} needs {kind} tensor there")
    if t.is_floating_point() and not t.is_meta:
        bad = _bad_value(t, allow_inf=not strict)
        if bad:
            raise ValueError(f"{source}: {label} holds {bad}")


def check_tensors(model: nn.Module, plan: dict, tensors: Mapping[str, torch.Tensor], source: str,
                  what: str = "this model", hint: str = "") -> None:
    """ValueError naming ``source`` and the tensor unless ``tensors`` (a file's, by name) fill ``model`` (its
    modules already rebuilt from ``plan``; meta tensors will do) exactly: every parameter has a tensor (its own
    or the one its alias names) of its shape, floating where it is; every buffer of a rebuilt module (quantized
    codes int8 / uint8, scales and zero points float16) is in the file with the same shape and dtype; other
    buffers in the file have their buffer's shape; no floating tensor holds NaN, no parameter or rebuilt buffer
    inf; the file has no tensor the model does not take. ``what`` names the model in messages, ``hint`` ends a
    shape mismatch's message."""
    aliases: dict[str, str] = plan.get("aliases", {})
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    for alias, canon in aliases.items():
        if alias not in params:
            raise ValueError(f"{source}: alias {alias!r} -> {canon!r} names no parameter of {what}")
        if alias in tensors:
            raise ValueError(f"{source}: {alias!r} is both a stored tensor and an alias of {canon!r}")
        if canon not in tensors:
            raise ValueError(f"{source}: alias {alias!r} reads {canon!r}, which is not a tensor of the file")
    for name, p in params.items():
        key = aliases.get(name, name)
        if key not in tensors:
            raise ValueError(f"parameter {name!r} of {what} is not in {source}")
        _check_slot(source, key, tensors[key], name, p, what, exact=not p.is_floating_point(), strict=True,
                    hint=hint)
    rebuilt = tuple(m + "." for m in _planned(plan))
    for name, b in buffers.items():
        own = name.startswith(rebuilt)  # made by an action's layer: exactly as it stores them
        if name not in tensors:
            if own or b.is_meta:
                raise ValueError(f"buffer {name!r} of {what} is not in {source}")
            continue
        _check_slot(source, name, tensors[name], name, b, what, exact=own or not b.is_floating_point(),
                    strict=own, hint=hint)
    extra = sorted(set(tensors) - set(params) - set(buffers))
    if extra:
        more = f" ... ({len(extra)} in all)" if len(extra) > 3 else ""
        raise ValueError(f"tensor {extra[0]!r} of {source} is not in {what}" if len(extra) == 1 else
                         f"{len(extra)} tensors of {source} are not in {what}: {', '.join(extra[:3])}{more}")


def _skeleton(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` whose parameters and buffers are on the meta device (no data copied; None where the
    model cannot be deep-copied)."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001 - an exotic module: its tensors are checked after the rebuild instead
        return None


def load_shared(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_shared` into ``model`` (a fresh model of the same architecture):
    rebuild the modules each action built, re-tie the aliased parameters (the same ``nn.Parameter`` again),
    then copy the values. Returns ``model``. The plan and every tensor are checked first (:func:`read_plan`,
    :func:`check_tensors`, on a meta copy of the model before it is changed): ValueError naming the file and
    the problem."""
    from safetensors.torch import load_file

    plan = read_plan(path)
    tensors = load_file(str(path))
    what = f"this model ({type(model).__name__})"
    ghost = _skeleton(model)
    if ghost is not None:  # checked before the model is touched (and before a rebuilt layer allocates)
        rebuild_modules(ghost, plan, str(path))
        check_tensors(ghost, plan, tensors, str(path), "this model", ": is it the same architecture?")
    rebuild_modules(model, plan, str(path))
    params = dict(model.named_parameters(remove_duplicate=False))
    for alias, canon in plan.get("aliases", {}).items():
        if alias not in params or canon not in params:
            raise ValueError(f"parameter {alias if alias not in params else canon!r} is not in {what}")
        owner, attr = parent_of(model, alias)
        setattr(owner, attr, params[canon])
    if ghost is None:
        check_tensors(model, plan, tensors, str(path), "this model", ": is it the same architecture?")
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, t in tensors.items():
            dest = params.get(name, buffers.get(name))
            if dest is None:
                raise ValueError(f"tensor {name!r} of the file is not in {what}")
            dest.copy_(t.to(dest.device))
    return model
