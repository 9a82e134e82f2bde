"""Selecting the shareable modules of a model by name pattern (peft ``target_modules`` style)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

__all__ = ["select_modules", "role_of", "SHAREABLE"]

SHAREABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def role_of(name: str) -> str:
    """A module's role: its name with layer indices replaced by ``*`` (``encoder.layer.*.attention.self.query``)."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _matches(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None or name == pattern or name.endswith("." + pattern)


def select_modules(
    model: nn.Module, targets: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> dict[str, nn.Module]:
    """The shareable modules (Linear, Conv1d, Conv2d) to build a graph from, by name.

    ``targets``: patterns, each a regex matched against the full module name or a name suffix (``"query"``
    matches ``encoder.layer.0.attention.self.query``). Default: every shareable module with at least one
    same-shaped peer. ``exclude``: patterns removed afterwards. A pattern that matches no shareable module is a
    ``ValueError`` naming it and the closest names.
    """
    mods = {n: m for n, m in model.named_modules() if isinstance(m, SHAREABLE) and n}
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(exclude, str):
        exclude = [exclude]
    if targets is None:
        shapes: dict[tuple, int] = {}
        for m in mods.values():
            shapes[tuple(m.weight.shape)] = shapes.get(tuple(m.weight.shape), 0) + 1
        chosen = {n: m for n, m in mods.items() if shapes[tuple(m.weight.shape)] > 1}
    else:
        chosen = {}
        for pat in targets:
            hit = {n: m for n, m in mods.items() if _matches(pat, n)}
            if not hit:
                sample = ", ".join(list(mods)[:6])
                raise ValueError(f"target pattern {pat!r} matches no Linear/Conv module (modules: {sample}, ...)")
            chosen.update(hit)
    for pat in exclude or ():
        hit = [n for n in chosen if _matches(pat, n)]
        if not hit:
            raise ValueError(f"exclude pattern {pat!r} matches no selected module")
        for n in hit:
            del chosen[n]
    if not chosen:
        raise ValueError("no shareable module selected (no Linear/Conv module has a same-shaped peer)")
    return dict(sorted(chosen.items(), key=lambda kv: list(mods).index(kv[0])))
