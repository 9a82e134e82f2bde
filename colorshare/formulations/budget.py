"""Budgets as users write them: a number of parameters, a percentage of the dense size, or "inf"."""

from __future__ import annotations

__all__ = ["parse_budget"]


def parse_budget(text: str, dense_size: int) -> float:
    """A budget in parameters, or a percentage of ``dense_size`` (parameters; "50%"), or "inf"."""
    t = text.strip()
    try:
        if t.endswith("%"):
            return float(t[:-1]) / 100.0 * dense_size
        return float(t)
    except ValueError:
        raise ValueError(f"budget {text!r} is neither a number of parameters nor a percentage like 50%") from None
