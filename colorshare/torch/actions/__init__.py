"""The sharing actions, one module each, and their registry (see :mod:`.base` for the interface).

    dense   a layer alone, unchanged
    tie     the members become one tensor (their curvature-weighted centre)
    medoid  the members use one member's weight
    basis   the members share a left basis U, each keeps its coefficients (same shape)
    input   the members share an input-side factor B (fed the same tensor; any output sizes)
    lowrank a layer alone as two factors stored in fewer bits (where the graph counts bytes)
"""

from __future__ import annotations

from .base import Action, SharedLinear
from .basis import Basis, BasisLinear
from .dense import Dense
from .input import InputFactor, InputFactorLinear
from .lowrank import LowRank, LowRankLinear
from .medoid import Medoid
from .tie import Tie

__all__ = ["Action", "SharedLinear", "BasisLinear", "InputFactorLinear", "LowRankLinear", "REGISTRY", "ACTIONS",
           "get_action", "layer_actions", "register"]

REGISTRY: dict[str, Action] = {a.name: a for a in (Dense(), Tie(), Medoid(), Basis(), InputFactor(), LowRank())}
"""Every action by name, in the order a group's options are listed."""

ACTIONS: tuple[str, ...] = tuple(REGISTRY)
"""The built-in actions' names."""


def register(action: Action) -> Action:
    """Add ``action`` to the registry under its name (after the built-in ones); returns it. ValueError if the
    name is taken or the action has no name or an unknown scope."""
    name = getattr(action, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"an action needs a non-empty name, got {name!r}")
    if name in REGISTRY:
        raise ValueError(f"an action called {name!r} is registered already")
    if action.scope not in ("shape", "input"):
        raise ValueError(f"action {name!r}: scope must be 'shape' or 'input', got {action.scope!r}")
    REGISTRY[name] = action
    return action


def get_action(name: str) -> Action:
    """The registered action called ``name``; ValueError listing the valid ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown action {name!r}; valid: {', '.join(REGISTRY)}") from None


def layer_actions() -> list[Action]:
    """The actions that put a module of their own in place of each member (saved and rebuilt by name)."""
    return [a for a in REGISTRY.values() if a.layer is not None]
