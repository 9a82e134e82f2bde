"""Instance files: a SharingGraph as JSON.

Format (one JSON object; ``sizes``, ``conflicts``, ``names``, ``families`` optional except where noted)::

    {"cost": [[0, 1.5], [2.0, 0]],          # medoid costs: cost[i][j] = loss when i is served by j
     "sizes": [4096, 4096],                  # parameters per layer (default 1)
     "conflicts": [[0, 1]],                  # pairs that may never share (indices or names)
     "names": ["a", "b"], "families": ["q", "q"]}

Instead of ``cost``: ``"pairwise": [[...]]`` (symmetric pairwise weights), or ``"groups"`` (sizes required)::

    "groups": [{"members": [0, 1], "options": [{"action": "tie", "cost": 0.4, "memory": 4096}]}, ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .formulations.graph import SharingGraph

__all__ = ["load_instance", "save_instance", "graph_from_dict", "graph_to_dict"]


def graph_from_dict(data: dict[str, Any]) -> SharingGraph:
    """Build a graph from the JSON object described in this module's docstring; ValueError on a bad one."""
    if not isinstance(data, dict):
        raise ValueError("an instance must be a JSON object")
    kinds = [k for k in ("cost", "pairwise", "groups") if k in data]
    if len(kinds) != 1:
        raise ValueError(f"an instance needs exactly one of 'cost', 'pairwise', 'groups'; found {kinds or 'none'}")
    unknown = set(data) - {"cost", "pairwise", "groups", "sizes", "conflicts", "names", "families", "budget"}
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
    return SharingGraph.from_groups(table, sizes=data["sizes"], **common)


def graph_to_dict(graph: SharingGraph) -> dict[str, Any]:
    """The JSON object of a graph (group graphs only when they come from a table)."""
    out: dict[str, Any] = {"sizes": [int(s) for s in graph.sizes], "names": list(graph.names),
                           "families": list(graph.families), "conflicts": [list(p) for p in sorted(graph.conflicts)]}
    if graph.kind == "medoid":
        out["cost"] = graph.cost_matrix.tolist()
    elif graph.kind == "pairwise":
        out["pairwise"] = graph.cost_matrix.tolist()
    else:
        table = getattr(graph.model, "table", None)
        if table is None:
            raise ValueError("a graph whose group costs come from an oracle cannot be written as a table")
        out["groups"] = [{"members": list(g), "options": [{"action": o.action, "cost": o.cost, "memory": o.memory}
                                                          for o in opts]} for g, opts in table.items()]
    return out


def load_instance(path: str | Path) -> SharingGraph:
    """Read an instance file; ValueError naming the file on bad JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return graph_from_dict(data)


def save_instance(graph: SharingGraph, path: str | Path) -> None:
    Path(path).write_text(json.dumps(graph_to_dict(graph)))
