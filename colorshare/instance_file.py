"""Instance files: a SharingGraph as JSON (``.json``, or gzip-compressed ``.json.gz``).

Format (one JSON object; ``sizes``, ``conflicts``, ``names``, ``families`` optional except where noted)::

    {"cost": [[0, 1.5], [2.0, 0]],          # medoid costs: cost[i][j] = loss when i is served by j
     "sizes": [4096, 4096],                  # parameters per layer (default 1)
     "conflicts": [[0, 1]],                  # pairs that may never share (indices or names)
     "names": ["a", "b"], "families": ["q", "q"]}

Instead of ``cost``: ``"pairwise": [[...]]`` (symmetric pairwise weights), or ``"groups"`` (sizes required)::

    "groups": [{"members": [0, 1], "options": [{"action": "tie", "cost": 0.4, "memory": 4096}]}, ...]

An option may also be a list ``[action, cost, memory]`` or ``[action, cost, memory, {params}]`` (compact).

A ``groups`` instance may carry ``"bounds"``: per family (its label), the list of
:class:`~colorshare.formulations.bounds.KindBound` that bound every group of 2+ members of the family,
``{"label", "fixed", "per_member", "costs", "excess"}`` (``costs[i]``: ``null`` for infinity; ``excess``: a
member x member matrix or ``null``). The table is then the evaluated part of a larger space (every
conflict-free same-family group): the groups it does not list exist, priced by the bounds only, so that
``solve`` states bounds for the whole space. This is how a model's graph is written without torch
(:func:`save_instance` of a :class:`~colorshare.torch.ModelGraph` after a solve: every evaluated column).

``"max_group_size"``: the largest class of the instance's space within a family (default: a whole family);
``"scopes"``: member sets across families whose subsets may form classes too (layers fed one input). Optional
``"budgets"``
(parameters) and ``"about"`` (free text) are kept for the reader; ``solve`` ignores them.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .formulations.bounds import FamilyBound, KindBound
from .formulations.graph import SharingGraph
from .validation import check_max_group_size

__all__ = ["load_instance", "read_instance", "save_instance", "graph_from_dict", "graph_to_dict"]

_KEYS = {"cost", "pairwise", "groups", "sizes", "conflicts", "names", "families", "budget", "budgets", "bounds",
         "about", "max_group_size", "scopes"}


def _kind_from_dict(family: str, raw: Any, n: int) -> KindBound:
    try:
        costs = np.array([math.inf if c is None else float(c) for c in raw["costs"]], dtype=float)
        excess = None if raw.get("excess") is None else np.asarray(raw["excess"], dtype=float)
        kb = KindBound(str(raw["label"]), int(raw["fixed"]), int(raw["per_member"]), costs, excess)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bounds of family {family!r}: each needs label, fixed, per_member, costs[, excess] "
                         f"({type(exc).__name__}: {exc})") from None
    if len(costs) != n:
        raise ValueError(f"bounds of family {family!r} give {len(costs)} member costs; the family has {n} layers")
    return kb


def graph_from_dict(data: dict[str, Any]) -> SharingGraph:
    """Build a graph from the JSON object described in this module's docstring; ValueError on a bad one."""
    if not isinstance(data, dict):
        raise ValueError("an instance must be a JSON object")
    kinds = [k for k in ("cost", "pairwise", "groups") if k in data]
    if len(kinds) != 1:
        raise ValueError(f"an instance needs exactly one of 'cost', 'pairwise', 'groups'; found {kinds or 'none'}")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown instance key(s): {', '.join(sorted(unknown))}")
    common = {"conflicts": data.get("conflicts", ()), "names": data.get("names"), "families": data.get("families")}
    if kinds[0] == "cost":
        return SharingGraph.from_matrix(data["cost"], sizes=data.get("sizes"), **common)
    if kinds[0] == "pairwise":
        return SharingGraph.from_pairwise(data["pairwise"], sizes=data.get("sizes"), **common)
    if "sizes" not in data:
        raise ValueError("a 'groups' instance needs 'sizes'")
    table: dict[tuple[int, ...], list[Any]] = {}
    for entry in data["groups"]:
        try:
            table[tuple(entry["members"])] = list(entry["options"])
        except (KeyError, TypeError):
            raise ValueError(f"each group needs 'members' and 'options', got {entry!r}") from None
    bounds = None
    if data.get("bounds") is not None:
        raw_bounds = data["bounds"]
        if not isinstance(raw_bounds, dict):
            raise ValueError("'bounds' must map each family label to a list of bounds")
        holder: dict[str, Any] = {}

        def bounds(members: tuple[int, ...]) -> FamilyBound | None:
            return holder.get(holder["graph"].families[members[0]])

    g = SharingGraph.from_groups(table, sizes=data["sizes"], bounds=bounds, **common)
    if data.get("scopes"):
        g.set_scopes(data["scopes"])
    mgs = data.get("max_group_size")
    if mgs is not None:
        g.max_group_size = check_max_group_size(mgs, "'max_group_size'")
    if bounds is not None:
        missing = [f for f in g.family_members if f not in raw_bounds and len(g.family_members[f]) > 1]
        if missing:
            raise ValueError(f"'bounds' has no entry for family {missing[0]!r}")
        holder["graph"] = g
        for f, kinds_raw in raw_bounds.items():
            if f not in g.family_members:
                raise ValueError(f"'bounds' names family {f!r}, which no layer has")
            holder[f] = FamilyBound([_kind_from_dict(f, kb, len(g.family_members[f])) for kb in kinds_raw])
    return g


def _num(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def _floor_digits(a: np.ndarray, digits: int = 7) -> list[Any]:
    """Non-negative values rounded DOWN to ``digits`` significant digits (so a lower bound stays valid) and
    written as such (nested lists of floats whose shortest form has at most ``digits`` digits)."""
    from decimal import Decimal

    def down(x: float) -> float:
        if x <= 0 or not math.isfinite(x):
            return 0.0
        mant, exp = f"{x:.{digits - 1}e}".split("e")
        v = float(f"{mant}e{exp}")
        if v > x:  # rounded up: one unit of the last digit less
            v = float(f"{Decimal(mant) - Decimal(1).scaleb(-(digits - 1))}e{exp}")
        return max(0.0, v)

    arr = np.asarray(a, dtype=float)
    return [[down(float(x)) for x in row] for row in arr]


def _option_list(opts: list[Any]) -> list[Any]:
    out = []
    for o in opts:
        row: list[Any] = [o.action, o.cost, o.memory]
        params = dict(o.params) if o.params else {}
        if o.representative is not None:
            params["representative"] = o.representative  # kept for the reader; a table's option is exact
        if params:
            row.append(params)
        out.append(row)
    return out


def graph_to_dict(graph: SharingGraph) -> dict[str, Any]:
    """The JSON object of a graph. Group costs from an oracle (a model's graph) are written as the groups it
    has evaluated so far, with the graph's bounds when it has them: the finite column set of a solve, which
    ``solve`` reads back without torch and prices the rest of the space by the bounds."""
    out: dict[str, Any] = {"sizes": [int(s) for s in graph.sizes], "names": list(graph.names),
                           "families": list(graph.families), "conflicts": [list(p) for p in sorted(graph.conflicts)]}
    if graph.kind == "medoid":
        out["cost"] = graph.cost_matrix.tolist()
    elif graph.kind == "pairwise":
        out["pairwise"] = graph.cost_matrix.tolist()
    else:
        model = graph.cost_model
        for i in range(graph.n):  # every layer's own options, so that the file always has a coloring
            graph.options((i,))
        table = model.evaluated()
        if graph.max_group_size is not None:
            out["max_group_size"] = int(graph.max_group_size)
        if graph.scopes:
            out["scopes"] = [list(sc) for sc in graph.scopes]
        out["groups"] = [{"members": list(g), "options": _option_list(opts)} for g, opts in sorted(table.items())]
        if model.has_bounds:
            out["bounds"] = {}
            for f, members in graph.family_members.items():
                fb = model.bounds(tuple(members))
                if fb is None:
                    if len(members) > 1:
                        raise ValueError(f"family {f!r} has no bound: the graph's space cannot be written")
                    continue
                out["bounds"][f] = [{"label": kb.label, "fixed": int(kb.fixed), "per_member": int(kb.per_member),
                                     "costs": [_num(c) for c in kb.costs],
                                     "excess": None if kb.excess is None or not np.any(kb.excess)
                                     else _floor_digits(kb.excess)} for kb in fb.kinds]
    return out


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            return fh.read()
    return path.read_text()


def read_instance(path: str | Path) -> tuple[SharingGraph, dict[str, Any]]:
    """An instance file's graph and its other keys (``budgets``, ``about``); ValueError naming the file."""
    p = Path(path)
    try:
        data = json.loads(_read_text(p))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    return graph_from_dict(data), {k: data[k] for k in ("budgets", "about", "budget") if k in data}


def load_instance(path: str | Path) -> SharingGraph:
    """Read an instance file (``.json`` or ``.json.gz``); ValueError naming the file on bad JSON."""
    return read_instance(path)[0]


def save_instance(graph: SharingGraph, path: str | Path, **extra: Any) -> None:
    """Write ``graph`` (see :func:`graph_to_dict`) to ``path``, gzip-compressed if it ends in ``.gz``; ``extra``
    keys (``budgets``, ``about``) are written too."""
    data = graph_to_dict(graph)
    data.update(extra)
    text = json.dumps(data, separators=(",", ":"))
    p = Path(path)
    if p.suffix == ".gz":
        with gzip.open(p, "wt", compresslevel=9) as fh:
            fh.write(text)
    else:
        p.write_text(text)
