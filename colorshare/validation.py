"""One way to validate a public function's parameters, with one message template.

A parameter is checked against constraints, each a small object that says whether a value satisfies it and
how to describe it; a value that satisfies none is a ``ValueError`` worded the same way everywhere::

    {name} must be {description of each constraint, joined by " or "}, got {value!r}

>>> check("time_limit", 0, NONE, Real(low=0, low_open=True))
Traceback (most recent call last):
...
ValueError: time_limit must be None or a number > 0, got 0

The package's recurring parameters have their checks here (:func:`check_time_limit`,
:func:`check_max_group_size`, ...), so that ``solve``, ``build_graph``, ``compress`` and the instance files
accept and refuse the same values with the same words. numpy-free and torch-free: any layer may import it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Constraint", "Real", "Integer", "OneOf", "NONE", "POSITIVE_INT", "NON_NEGATIVE_INT", "check",
           "check_time_limit", "check_max_group_size", "check_seed", "check_budget", "check_fraction", "check_flag",
           "check_choice"]


class Constraint:
    """A set of accepted values: :meth:`holds` tests one, :attr:`description` names the set in a message."""

    @property
    def description(self) -> str:
        raise NotImplementedError

    def holds(self, value: Any) -> bool:
        raise NotImplementedError


class _NoneConstraint(Constraint):
    @property
    def description(self) -> str:
        return "None"

    def holds(self, value: Any) -> bool:
        return value is None


NONE: Constraint = _NoneConstraint()
"""Accepts ``None``."""


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


@dataclass(frozen=True)
class Real(Constraint):
    """A real number (not a bool, not NaN) in an interval; ``inf`` only where the upper end allows it."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False
    what: str = "a number"
    label: str | None = None
    """The whole description, where the interval needs no words of its own ("a positive integer")."""

    @property
    def description(self) -> str:
        return self.label or self.what + _interval(self.low, self.high, self.low_open, self.high_open)

    def holds(self, value: Any) -> bool:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            return False
        try:
            v = float(value)
        except OverflowError:  # an int beyond float's range: no interval here holds it
            return False
        if math.isnan(v) or (math.isinf(v) and not (self.allow_inf and v > 0)):
            return False
        return _inside(v, self.low, self.high, self.low_open, self.high_open)


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer (not a bool) in a closed interval."""

    low: int | None = None
    high: int | None = None
    what: str = "an integer"
    label: str | None = None
    """The whole description, where the interval needs no words of its own ("a positive integer")."""

    @property
    def description(self) -> str:
        return self.label or self.what + _interval(self.low, self.high, False, False)

    def holds(self, value: Any) -> bool:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            return False
        return _inside(int(value), self.low, self.high, False, False)


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a few values (compared with ``==``, bools told apart from 0 and 1)."""

    values: tuple[Any, ...]

    @property
    def description(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def holds(self, value: Any) -> bool:
        return any(value is v if _is_bool(v) or _is_bool(value) else _equal(value, v) for v in self.values)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object whose == raises is simply not equal
        return False


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _inside(v: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (v < low or (low_open and v == low)):
        return False
    return not (high is not None and (v > high or (high_open and v == high)))


def check(name: str, value: Any, *constraints: Constraint) -> Any:
    """``value`` if one of ``constraints`` holds for it, else ``ValueError`` in the one template."""
    if any(c.holds(value) for c in constraints):
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:60] + f"... ({len(shown)} characters)"
    raise ValueError(f"{name} must be {' or '.join(c.description for c in constraints)}, got {shown}")


POSITIVE_INT = Integer(low=1, label="a positive integer")
"""An integer >= 1."""

NON_NEGATIVE_INT = Integer(low=0, label="a non-negative integer")
"""An integer >= 0."""


def check_time_limit(value: Any, name: str = "time_limit") -> float | None:
    """Seconds > 0, or None (no limit)."""
    check(name, value, NONE, Real(low=0, low_open=True, allow_inf=True, what="a number of seconds"))
    return None if value is None else float(value)


def check_max_group_size(value: Any, name: str = "max_group_size") -> int | None:
    """The largest sharing class: a positive integer, or None (a whole family)."""
    check(name, value, NONE, POSITIVE_INT)
    return None if value is None else int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A random seed: any integer."""
    return int(check(name, value, Integer()))


def check_budget(value: Any, unit: str = "parameters", name: str = "budget") -> float:
    """A budget in ``unit``: a real number >= 0 (``inf``: no budget)."""
    return float(check(name, value, Real(low=0, allow_inf=True, what=f"a number of {unit}")))


def check_fraction(value: Any, name: str, low_open: bool = True, high_open: bool = False) -> float:
    """A number in (0, 1] (ends open or closed as asked)."""
    return float(check(name, value, Real(low=0, high=1, low_open=low_open, high_open=high_open)))


def check_flag(value: Any, name: str) -> bool:
    """True or False (not 0, 1 or a string)."""
    return bool(check(name, value, OneOf((True, False))))


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    return check(name, value, OneOf(tuple(choices)))

