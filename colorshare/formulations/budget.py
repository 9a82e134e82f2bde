"""Budgets as users write them, and the unit each one is in.

- ``"50%"``: stored parameters of the targeted layers over their dense count (the compression ratio);
- ``"1200000"`` (a number, or ``"inf"``): parameters;
- ``"4.5bpw"``: average bits per weight over the targeted layers, every stored byte counted (codes, scales and
  zero points);
- ``"60MB"`` / ``"60MiB"`` (also kB, KiB, GB, GiB, B): bytes of the targeted layers.

The first two are in parameters, the others in bytes: :class:`Budget` keeps the unit, and
:meth:`Budget.resolve` turns it into a number in the unit of a graph (``solve()`` takes that number).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import SharingGraph

__all__ = ["Budget", "parse_budget", "BYTE_UNITS"]

BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}

_FORMS = "a percentage like 50%, a number of parameters, bits per weight like 4.5bpw, or bytes like 60MB / 60MiB"


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``kind`` is ``"fraction"`` (of the dense parameters), ``"parameters"``, ``"bpw"``
    (bits per weight) or ``"bytes"``; ``value`` its number; ``text`` what the user wrote."""

    kind: str
    value: float
    text: str

    @property
    def unit(self) -> str:
        """``"parameters"`` or ``"bytes"``: the memory unit a graph solved for this budget counts in."""
        return "parameters" if self.kind in ("fraction", "parameters") else "bytes"

    def resolve(self, dense_parameters: int) -> float:
        """The budget in its unit for layers holding ``dense_parameters`` weights (parameters, or bytes)."""
        if self.kind == "fraction":
            return self.value * dense_parameters
        if self.kind == "bpw":
            return self.value / 8.0 * dense_parameters
        return self.value

    def for_graph(self, graph: SharingGraph) -> float:
        """The budget as a number in ``graph``'s memory unit (:attr:`SharingGraph.unit`); a percentage is of its
        dense size. ValueError when the budget is in another unit than the graph counts."""
        if self.kind == "fraction":
            return self.value * graph.dense_size
        if self.unit != graph.unit:
            hint = "build it with bit-widths to count bytes" if self.unit == "bytes" else "give a percentage or bytes"
            raise ValueError(f"budget {self.text!r} is in {self.unit}, but this graph counts {graph.unit} ({hint})")
        return self.resolve(graph.dense_parameters)


def parse_budget(text: str) -> Budget:
    """The :class:`Budget` ``text`` stands for; ValueError naming the forms accepted. A budget must be > 0."""
    t = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?|inf)(%|bpw|b|kb|mb|gb|kib|mib|gib)?", t)
    if m is None:
        raise ValueError(f"budget {text!r} is none of {_FORMS}")
    value, suffix = float(m.group(1)), m.group(2)
    if suffix == "%":
        budget = Budget("fraction", value / 100.0, str(text))
    elif suffix == "bpw":
        budget = Budget("bpw", value, str(text))
    elif suffix is None:
        budget = Budget("parameters", value, str(text))
    else:
        budget = Budget("bytes", value * BYTE_UNITS[suffix], str(text))
    if not budget.value > 0 or (math.isinf(budget.value) and budget.kind not in ("parameters", "bytes")):
        raise ValueError(f"budget {text!r} must be > 0 (and finite as a percentage or bits per weight)")
    return budget
