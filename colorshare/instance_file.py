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
``"budgets"`` (an array) or ``"budget"`` (parameters) and ``"about"`` (free text) are kept for the reader;
``solve`` ignores them.

Reading is strict, so that nothing is run on a file that says something else, nothing in it is dropped and no
answer is silently wrong: every key and field is checked, every index (group members, conflicts, scopes, a
representative) must name a layer, a group is listed once (its member set, in any order) and repeats no member,
and every error is a ``ValueError`` of one line, ``<file>: <field>: <what is wrong>``
(:func:`graph_from_dict`: ``<field>: <what is wrong>``).

Numbers are bounded so that no arithmetic downstream overflows or loses exactness (see :data:`MAX_MEMORY`,
:data:`MAX_TOTAL_MEMORY` and :data:`MAX_COST`): sizes, memories and a bound's ``fixed`` / ``per_member`` are
JSON integers (not ``4.0``) in [0, 2**50] (sizes >= 1) that sum to at most 2**53 over the whole file; costs, a
bound's member costs (or ``null``) and pair excesses are finite, at most 1e100 in magnitude (an option's cost >= 0);
budgets are numbers in [0, 2**53]. A file's bounds must hold for the options it lists (else they would cut them off).
"""

from __future__ import annotations

import gzip
import json
import math
import numbers
import reprlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .formulations.bounds import FamilyBound, KindBound, matching_factor
from .formulations.costs import Option
from .formulations.graph import SharingGraph
from .validation import POSITIVE_INT, Constraint, Integer, Real, check

__all__ = ["load_instance", "read_instance", "save_instance", "graph_from_dict", "graph_to_dict", "MAX_MEMORY",
           "MAX_TOTAL_MEMORY", "MAX_COST"]

MAX_MEMORY = 2**50
"""The largest size, option memory or bound ``fixed`` / ``per_member`` (parameters or bytes) a file may give: a
real layer has under 2**40 parameters; the cap leaves 2**13 of them room below :data:`MAX_TOTAL_MEMORY`."""

MAX_TOTAL_MEMORY = 2**53
"""The most that all the sizes and memories of a file may sum to. Any coloring's memory, the dense size and the
sum of any row of a solver's program then is an integer below 2**53: exact in float64 (HiGHS, CBC, the budget
comparisons, percentages of the dense size) and far below int64's 2**63 (numpy's sums, CP-SAT's coefficients and
its overflow check over a row), where sizes near 2**62 used to wrap to 0."""

MAX_COST = 1e100
"""The largest magnitude of a cost or a pair excess (costs are >= 0, finite). Sums of n**2 of them, their
products with a dual price per parameter (times at most 2**53) and a solver's scaling by the largest cost stay far
below float64's 1.8e308, where costs near 1e308 used to overflow."""

_KEYS = {"cost", "pairwise", "groups", "sizes", "conflicts", "names", "families", "budget", "budgets", "bounds",
         "about", "max_group_size", "scopes"}
_OPTION_KEYS = {"action", "cost", "memory", "representative", "params"}
_BOUND_KEYS = {"label", "fixed", "per_member", "costs", "excess"}


class _Type(Constraint):
    """Values of some Python types (what JSON reads as an array, an object, a string)."""

    def __init__(self, types: tuple[type, ...], description: str) -> None:
        self.types, self._description = types, description

    @property
    def description(self) -> str:
        return self._description

    def holds(self, value: Any) -> bool:
        return isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool))


_ARRAY = _Type((list, tuple), "a JSON array")
_OBJECT = _Type((dict,), "a JSON object")
_STRING = _Type((str,), "a string")
_NULL = _Type((type(None),), "null")
_SIZE = Integer(low=1, high=MAX_MEMORY, label="an integer in [1, 2**50]")
_MEMORY = Integer(low=0, high=MAX_MEMORY, label="an integer in [0, 2**50]")
_COST = Real(low=0, high=MAX_COST, label="a finite number in [0, 1e100]")
_EXCESS = Real(low=-MAX_COST, high=MAX_COST, label="a finite number in [-1e100, 1e100]")
_BUDGET = Real(low=0, high=MAX_TOTAL_MEMORY, label="a number in [0, 2**53]")
_FAMILY = _Type((str, int), "a string or an integer")


class _Shown:
    """A value too large to write whole in a one-line message (a long string, an array, a huge integer)."""

    _repr = reprlib.Repr()
    _repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 4, 3, 40, 40

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        v = self.value
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            sign = "a negative" if v < 0 else "an"
            return f"{sign} integer of about {int(abs(int(v)).bit_length() * math.log10(2)) + 1} digits"
        return self._repr.repr(v)


def _plain(value: Any) -> Any:
    """``value`` if it is short to write, else a :class:`_Shown` of it (which no constraint here accepts)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return value if abs(int(value)) < 10**20 else _Shown(value)
    if isinstance(value, numbers.Real) or (isinstance(value, str) and len(value) <= 40):
        return value
    return _Shown(value)


def _check(field: str, value: Any, *constraints: Constraint, what: str = "it") -> Any:
    """``value`` if a constraint holds for it, else ``ValueError("<field>: <what> must be ..., got ...")``
    (:func:`~colorshare.validation.check`'s template, the value shortened to one line)."""
    huge = isinstance(value, numbers.Integral) and abs(int(value)) >= 10**300  # float() of it overflows
    if not huge and any(c.holds(value) for c in constraints):
        return value
    try:
        check(what, _plain(value), *constraints)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}{_why(_plain(value))}") from None
    raise ValueError(f"{field}: {what} is not accepted, got {_plain(value)!r}")  # not reached: nothing holds


def _why(value: Any) -> str:
    """What is wrong with a refused number, in a word or two (or nothing)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return ""
    v = float(value)
    if math.isnan(v):
        return " (NaN)"
    if math.isinf(v):
        return " (infinite)"
    return " (negative)" if v < 0 else ""


def _array(field: str, value: Any, what: str, length: int | None = None) -> list[Any]:
    """A JSON array (a list; a tuple or numpy array from Python) as a list, of ``length`` items if given."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    out = list(_check(field, value, _ARRAY, what=what))
    if length is not None and len(out) != length:
        raise ValueError(f"{field}: {what} has {len(out)} entries; expected {length} (one per layer)")
    return out


def _object(field: str, value: Any, what: str, keys: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object with only ``keys``, ``required`` ones present."""
    obj = _check(field, value, _OBJECT, what=what)
    unknown = sorted(str(k) for k in obj if k not in keys)
    if unknown:
        raise ValueError(f"{field}: unknown key(s) {', '.join(repr(_plain(k)) for k in unknown)}; "
                         f"allowed: {', '.join(sorted(keys))}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(f"{field}: {what} lacks {', '.join(repr(k) for k in missing)}")
    return obj


def _layer(field: str, value: Any, n: int) -> int:
    """A layer index in 0..n-1 (an integer; not a bool, not 1.0)."""
    return int(_check(field, value, Integer(low=0, high=n - 1, label=f"an integer in 0..{n - 1}"),
                      what="a layer index"))


def _members(field: str, value: Any, n: int, what: str = "the members") -> tuple[int, ...]:
    """Distinct layer indices, sorted."""
    raw = _array(field, value, what)
    out = [_layer(f"{field}[{k}]", x, n) for k, x in enumerate(raw)]
    seen: dict[int, int] = {}
    for k, i in enumerate(out):
        if i in seen:
            raise ValueError(f"{field}: layer {i} is listed twice ({field}[{seen[i]}] and {field}[{k}])")
        seen[i] = k
    return tuple(sorted(out))


def _in_range(raw: list[Any], entry: Real) -> np.ndarray | None:
    """``raw`` as float64 when every item is a plain JSON number that ``entry`` accepts (checked at once), else
    None (then each item is checked alone, to name the bad one)."""
    if not all(type(x) is float or type(x) is int for x in raw):
        return None
    try:
        a = np.array(raw, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    lo = -np.inf if entry.low is None else entry.low
    hi = np.inf if entry.high is None else entry.high
    return a if bool((np.isfinite(a) & (a >= lo) & (a <= hi)).all()) else None


def _numbers(field: str, value: Any, entry: Real, what: str, length: int) -> np.ndarray:
    """A JSON array of ``length`` numbers that ``entry`` accepts, as float64."""
    raw = _array(field, value, what, length)
    a = _in_range(raw, entry)
    if a is not None:
        return a
    for k, x in enumerate(raw):
        _check(f"{field}[{k}]", x, entry, what="an entry")
    return np.array([float(x) for x in raw], dtype=np.float64)


def _matrix(field: str, value: Any, entry: Real, n: int) -> np.ndarray:
    """An n x n JSON matrix (array of rows) of numbers that ``entry`` accepts."""
    rows = _array(field, value, "the matrix", n)
    if all(type(r) is list and len(r) == n for r in rows):  # the usual case at once
        a = _in_range([x for r in rows for x in r], entry)
        if a is not None:
            return a.reshape(n, n)
    return np.array([_numbers(f"{field}[{i}]", r, entry, "a row", n) for i, r in enumerate(rows)],
                    dtype=np.float64).reshape(n, n)


def _square_costs(field: str, value: Any, symmetric: bool) -> np.ndarray:
    """A ``cost`` / ``pairwise`` matrix: square, entries in [0, 1e100], zero diagonal (symmetric if asked)."""
    rows = _array(field, value, "the matrix")
    if not rows:
        raise ValueError(f"{field}: the matrix is empty; an instance needs at least one layer")
    a = _matrix(field, rows, _COST, len(rows))
    diag = np.flatnonzero(np.diag(a) != 0)
    if len(diag):
        i = int(diag[0])
        raise ValueError(f"{field}[{i}][{i}]: the diagonal must be 0 (a layer shares with itself for free), "
                         f"got {a[i, i]!r}")
    if symmetric:
        bad = np.argwhere(~np.isclose(a, a.T, rtol=1e-12, atol=0))
        if len(bad):
            i, j = map(int, bad[0])
            raise ValueError(f"{field}[{i}][{j}]: the matrix must be symmetric, got {a[i, j]!r} != "
                             f"{field}[{j}][{i}] = {a[j, i]!r}")
    return a


def _option(field: str, raw: Any, group: tuple[int, ...], n: int) -> Option:
    """One option of a group: ``[action, cost, memory[, params]]`` or ``{"action", "cost", "memory"[,
    "representative"][, "params"]}``."""
    if isinstance(raw, dict):
        obj = _object(field, raw, "an option", _OPTION_KEYS, ("action", "cost", "memory"))
        action, cost, memory = obj["action"], obj["cost"], obj["memory"]
        rep, params = obj.get("representative"), obj.get("params", {})
    else:
        t = _array(field, raw, "an option ([action, cost, memory[, params]] or an object)")
        if len(t) not in (3, 4):
            raise ValueError(f"{field}: an option is [action, cost, memory] or [action, cost, memory, params]; "
                             f"got {len(t)} entries")
        action, cost, memory = t[:3]
        rep, params = None, t[3] if len(t) == 4 else {}
    if type(action) is not str:
        _check(f"{field}.action", action, _STRING, what="an action")
    if not ((type(cost) is float or type(cost) is int) and 0 <= cost <= MAX_COST):  # NaN fails too
        _check(f"{field}.cost", cost, _COST, what="a cost")
    if not (type(memory) is int and 0 <= memory <= MAX_MEMORY):
        _check(f"{field}.memory", memory, _MEMORY, what="a memory")
    if type(params) is not dict:
        _check(f"{field}.params", params, _OBJECT, what="the params")
    for where, r in ((f"{field}.representative", rep), (f"{field}.params.representative",
                                                         params.get("representative"))):
        if r is not None and _layer(where, r, n) not in group:
            raise ValueError(f"{where}: the representative must be a member of the group {list(group)}, got {r!r}")
    return Option(action, float(cost), int(memory), None if rep is None else int(rep), dict(params))


def _groups(value: Any, sizes: list[int]) -> tuple[dict[tuple[int, ...], list[Option]], dict[tuple[int, ...], int]]:
    """The ``groups`` table (sorted member tuples -> options) and each group's position in the file; every layer
    in some group with an option."""
    n = len(sizes)
    table: dict[tuple[int, ...], list[Option]] = {}
    where: dict[tuple[int, ...], int] = {}
    for k, entry in enumerate(_array("groups", value, "the groups")):
        field = f"groups[{k}]"
        obj = _object(field, entry, "a group", {"members", "options"}, ("members", "options"))
        members = _members(f"{field}.members", obj["members"], n)
        if not members:
            raise ValueError(f"{field}.members: a group needs at least one layer")
        if members in where:
            raise ValueError(f"{field}: layers {list(members)} are listed already as groups[{where[members]}] "
                             "(a group is its member set, in any order: list it once, with all its options)")
        opts = _array(f"{field}.options", obj["options"], "the options")
        table[members] = [_option(f"{field}.options[{j}]", o, members, n) for j, o in enumerate(opts)]
        where[members] = k
    covered = {i for members, opts in table.items() if opts for i in members}
    if len(covered) < n:
        i = min(set(range(n)) - covered)
        raise ValueError(f"groups: layer {i} is in no group with an option, so no coloring exists (list each "
                         f"layer's own options, e.g. {{\"members\": [{i}], \"options\": [[\"dense\", 0, "
                         f"{sizes[i]}]]}})")
    return table, where


def _kind(field: str, raw: Any, m: int) -> KindBound:
    """One bound of a family of ``m`` layers."""
    obj = _object(field, raw, "a bound", _BOUND_KEYS, ("label", "fixed", "per_member", "costs"))
    label = _check(f"{field}.label", obj["label"], _STRING, what="a label")
    fixed = _check(f"{field}.fixed", obj["fixed"], _MEMORY, what="fixed")
    per_member = _check(f"{field}.per_member", obj["per_member"], _MEMORY, what="per_member")
    raw_costs = _array(f"{field}.costs", obj["costs"], "the costs", m)
    finite = _in_range([x for x in raw_costs if x is not None], _EXCESS)  # null: no group has this kind
    if finite is not None:
        costs = np.full(m, np.inf)
        costs[[i for i, x in enumerate(raw_costs) if x is not None]] = finite
    else:
        costs = np.array([math.inf if c is None else float(_check(f"{field}.costs[{i}]", c, _NULL, _EXCESS,
                                                                  what="a member's cost"))
                          for i, c in enumerate(raw_costs)], dtype=np.float64)
    excess = None
    if obj.get("excess") is not None:
        excess = _matrix(f"{field}.excess", obj["excess"], _EXCESS, m)
        bad = np.argwhere(excess != excess.T)
        if len(bad):
            i, j = map(int, bad[0])
            raise ValueError(f"{field}.excess[{i}][{j}]: the excess matrix must be symmetric, got "
                             f"{excess[i, j]!r} != excess[{j}][{i}] = {excess[j, i]!r}")
    return KindBound(label, int(fixed), int(per_member), costs, excess)


def _conflicts(value: Any, n: int, names: list[str] | None) -> list[tuple[int, int]]:
    """Conflict pairs as index pairs (each end an index or a layer's name)."""
    index = {name: i for i, name in enumerate(names or ())}
    out = []
    for k, pair in enumerate(_array("conflicts", value, "the conflicts")):
        field = f"conflicts[{k}]"
        ends = _array(field, pair, "a conflict (a pair of layers)")
        if len(ends) != 2:
            raise ValueError(f"{field}: a conflict is a pair of layers, got {len(ends)} entries")
        uv = []
        for e, x in enumerate(ends):
            if isinstance(x, str):
                if x not in index:
                    raise ValueError(f"{field}[{e}]: no layer is named {_plain(x)!r}")
                uv.append(index[x])
            else:
                uv.append(_layer(f"{field}[{e}]", x, n))
        if uv[0] == uv[1]:
            raise ValueError(f"{field}: a conflict joins two layers, got layer {uv[0]} twice")
        out.append((uv[0], uv[1]))
    return out


def _scopes(value: Any, n: int) -> list[tuple[int, ...]]:
    """Scopes: member sets of 2+ distinct layers, each listed once."""
    seen: dict[tuple[int, ...], int] = {}
    for k, sc in enumerate(_array("scopes", value, "the scopes")):
        t = _members(f"scopes[{k}]", sc, n, "a scope")
        if len(t) < 2:
            raise ValueError(f"scopes[{k}]: a scope needs 2+ layers, got {list(t)}")
        if t in seen:
            raise ValueError(f"scopes[{k}]: layers {list(t)} are listed already as scopes[{seen[t]}]")
        seen[t] = k
    return list(seen)


def _sizes(value: Any, n: int | None) -> list[int]:
    """Parameters per layer: integers in [1, 2**50]; ``n`` of them if given."""
    raw = _array("sizes", value, "the sizes", n)
    return [int(_check(f"sizes[{i}]", s, _SIZE, what="a size")) for i, s in enumerate(raw)]


def _names(value: Any, n: int) -> list[str]:
    """Distinct layer names (strings), one per layer."""
    names = [_check(f"names[{i}]", x, _STRING, what="a name") for i, x in enumerate(_array("names", value,
                                                                                         "the names", n))]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise ValueError(f"names[{i}]: {_plain(name)!r} is the name of layer {first[name]} already")
        first[name] = i
    return names


def _families(value: Any, sizes: list[int]) -> list[str]:
    """A family label (a string or an integer, read as a string) per layer; a family's layers of one size."""
    families = [str(_check(f"families[{i}]", f, _FAMILY, what="a family label"))
                for i, f in enumerate(_array("families", value, "the families", len(sizes)))]
    size_of: dict[str, int] = {}
    for i, f in enumerate(families):
        if size_of.setdefault(f, sizes[i]) != sizes[i]:
            raise ValueError(f"families[{i}]: family {_plain(f)!r} mixes layer sizes {size_of[f]} and {sizes[i]} "
                             f"(sizes[{i}]); layers of different sizes never share")
    return families


def _budgets(data: dict[str, Any]) -> None:
    """``budget``: a number; ``budgets``: an array of numbers; each in [0, 2**53] (parameters)."""
    if "budget" in data:
        _check("budget", data["budget"], _BUDGET, what="a budget")
    if "budgets" in data:
        for k, b in enumerate(_array("budgets", data["budgets"], "the budgets")):
            _check(f"budgets[{k}]", b, _BUDGET, what="a budget")


def _check_total(sizes: list[int], table: dict[tuple[int, ...], list[Option]] | None) -> None:
    """The sizes and memories of a file sum to at most :data:`MAX_TOTAL_MEMORY`."""
    total = sum(sizes) + sum(o.memory for opts in (table or {}).values() for o in opts)
    if total > MAX_TOTAL_MEMORY:
        field = "sizes" if sum(sizes) > MAX_TOTAL_MEMORY else "groups"
        raise ValueError(f"{field}: the sizes and memories of the instance sum to {total}, above 2**53 (the most a "
                         "solver sums exactly)")


def graph_from_dict(data: dict[str, Any]) -> SharingGraph:
    """Build a graph from the JSON object described in this module's docstring; ``ValueError("<field>: <what is
    wrong>")``, one line, on a bad one."""
    obj = _object("instance", data, "an instance", _KEYS)
    kinds = [k for k in ("cost", "pairwise", "groups") if k in obj]
    if len(kinds) != 1:
        raise ValueError(f"instance: an instance needs exactly one of 'cost', 'pairwise', 'groups'; "
                         f"found {kinds or 'none'}")
    kind = kinds[0]
    matrix = None
    if kind == "groups":
        if "sizes" not in obj:
            raise ValueError("sizes: a 'groups' instance needs 'sizes'")
        sizes = _sizes(obj["sizes"], None)
        if not sizes:
            raise ValueError("sizes: an instance needs at least one layer")
        n = len(sizes)
    else:
        matrix = _square_costs(kind, obj[kind], symmetric=kind == "pairwise")
        n = len(matrix)
        sizes = [1] * n if obj.get("sizes") is None else _sizes(obj["sizes"], n)
    names = None if obj.get("names") is None else _names(obj["names"], n)
    families = None if obj.get("families") is None else _families(obj["families"], sizes)
    conflicts = [] if obj.get("conflicts") is None else _conflicts(obj["conflicts"], n, names)
    scopes = [] if obj.get("scopes") is None else _scopes(obj["scopes"], n)
    mgs = obj.get("max_group_size")
    if mgs is not None:
        _check("max_group_size", mgs, POSITIVE_INT, what="max_group_size")
    _budgets(obj)
    if obj.get("about") is not None:
        _check("about", obj["about"], _STRING, what="about")
    table, where = _groups(obj["groups"], sizes) if kind == "groups" else (None, {})
    _check_total(sizes, table)
    raw_bounds = obj.get("bounds")
    if raw_bounds is not None and kind != "groups":
        raise ValueError("bounds: only a 'groups' instance has bounds")
    common: dict[str, Any] = {"sizes": sizes, "conflicts": conflicts, "names": names, "families": families}
    bounds: Callable[[tuple[int, ...]], FamilyBound | None] | None = None
    holder: dict[str, FamilyBound] = {}
    if raw_bounds is not None:
        _check("bounds", raw_bounds, _OBJECT, what="bounds (each family label -> a list of bounds)")
        fam_of: list[str] = []

        def bounds(members: tuple[int, ...]) -> FamilyBound | None:
            return holder.get(fam_of[members[0]])

    try:
        if kind == "groups":
            g = SharingGraph.from_groups(table or {}, bounds=bounds, **common)
        elif kind == "cost":
            g = SharingGraph.from_matrix(matrix, **common)
        else:
            g = SharingGraph.from_pairwise(matrix, **common)
        if scopes:
            g.set_scopes(scopes)
    except ValueError as exc:  # checked above; kept so that a check the graph adds still names the instance
        raise ValueError(f"{kind}: {' '.join(str(exc).split())}") from None
    if mgs is not None:
        g.max_group_size = int(mgs)
    for members, k in where.items():
        if len(members) > 1 and not g.is_group(members):
            a, b = g.first_conflict(members) or members[:2]
            why = "in conflict" if g.families[a] == g.families[b] else "of different families"
            raise ValueError(f"groups[{k}].members: layers {a} and {b} are {why} and in no common scope, so the "
                             f"group {list(members)} may never form")
    if raw_bounds is not None:
        fam_of.extend(g.families)
        for f, kinds_raw in raw_bounds.items():
            field = f"bounds[{_plain(f)!r}]"
            if f not in g.family_members:
                raise ValueError(f"{field}: no layer has the family {_plain(f)!r}")
            m = len(g.family_members[f])
            raw_kinds = _array(field, kinds_raw, "a family's bounds")
            holder[f] = FamilyBound([_kind(f"{field}[{q}]", kb, m) for q, kb in enumerate(raw_kinds)])
        missing = [f for f in g.family_members if f not in holder and len(g.family_members[f]) > 1]
        if missing:
            raise ValueError(f"bounds: no entry for the family {_plain(missing[0])!r} (of 2+ layers)")
        _check_bounds_hold(g, table or {}, where, holder)
    return g


def _check_bounds_hold(g: SharingGraph, table: dict[tuple[int, ...], list[Option]], where: dict[tuple[int, ...], int],
                       holder: dict[str, FamilyBound]) -> None:
    """Every listed option of a family's group of 2+ members meets one of the family's bounds (cost and memory),
    within the solvers' noise (1e-9 relative): a bound above a column would cut the optimum off, and ``solve``
    would prove a wrong answer or find its proof broken."""
    for members, k in where.items():
        f = g.families[members[0]]
        if len(members) < 2 or f not in holder or any(g.families[i] != f for i in members):
            continue
        pos = np.searchsorted(np.asarray(g.family_members[f]), members)
        iu, ju = np.triu_indices(len(pos), 1)
        floors = []
        for kb in holder[f].kinds:
            cost = float(kb.costs[pos].sum())
            if kb.excess is not None:
                cost += matching_factor(len(pos)) * float(kb.excess[pos[iu], pos[ju]].sum())
            floors.append((cost, kb.fixed + len(pos) * kb.per_member))
        for j, o in enumerate(table[members]):
            if not any(o.memory >= mem and o.cost >= cost - 1e-9 * max(1.0, abs(cost)) for cost, mem in floors):
                best = ", ".join(f"cost {c:.6g} / memory {m}" for c, m in floors) or "none: no group of 2+ may form"
                raise ValueError(f"groups[{k}].options[{j}]: cost {o.cost!r} with memory {o.memory} is below every "
                                 f"bound of its family, bounds[{_plain(f)!r}] ({_clip(best)}): they would cut it off")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def _floor_digits(a: np.ndarray, digits: int = 7) -> list[Any]:
    """Values rounded DOWN (toward -inf, so that a lower bound stays valid; a negative pair excess stays negative)
    to ``digits`` significant digits and written as such (nested lists of floats whose shortest form has at most
    ``digits`` digits)."""
    from decimal import Decimal

    unit = Decimal(1).scaleb(-(digits - 1))

    def down(x: float) -> float:
        if x == 0 or not math.isfinite(x):
            return 0.0
        mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
        v = float(f"{mant}e{exp}")
        if x > 0 and v > x:  # rounded up: one unit of the last digit less
            v = float(f"{Decimal(mant) - unit}e{exp}")
        elif x < 0 and v < -x:  # the magnitude rounded down: one unit more
            v = float(f"{Decimal(mant) + unit}e{exp}")
        return max(0.0, v) if x > 0 else -v

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


def _where(path: str | Path) -> str:
    """The file's name as given, on one line."""
    s = str(path)
    return s if s.isprintable() else repr(s)[1:-1]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _read_data(path: str | Path) -> Any:
    """The JSON value of a file (gzip-compressed if it ends in ``.gz`` or starts like gzip); ValueError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if p.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"cannot read it ({_one_line(exc)})") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark, as some editors write, is no error
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({_one_line(exc)})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python converts
        raise ValueError(f"not valid JSON ({_one_line(exc)})") from None


def read_instance(path: str | Path) -> tuple[SharingGraph, dict[str, Any]]:
    """An instance file's graph and its other keys (``budgets``, ``budget``, ``about``); ``ValueError("<file>:
    <field>: <what is wrong>")``, one line, on a file that cannot be read or is not a valid instance."""
    try:
        data = _read_data(path)
        graph = graph_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{_where(path)}: {_one_line(exc)}") from None
    return graph, {k: data[k] for k in ("budgets", "about", "budget") if k in data}


def load_instance(path: str | Path) -> SharingGraph:
    """Read an instance file (``.json`` or ``.json.gz``); ValueError naming the file (see :func:`read_instance`)."""
    return read_instance(path)[0]


def save_instance(graph: SharingGraph, path: str | Path, **extra: Any) -> None:
    """Write ``graph`` (see :func:`graph_to_dict`) to ``path``, gzip-compressed if it ends in ``.gz``; ``extra``
    keys (``budgets``, ``about``) are written too. ValueError naming the file, before writing anything, where
    the file would not read back (a number out of bounds, an unknown key, ...)."""
    data = graph_to_dict(graph)
    data.update(extra)
    try:
        graph_from_dict(json.loads(json.dumps(data)))  # what the reader will see: tuples as arrays, inf as null
    except ValueError as exc:
        raise ValueError(f"{_where(path)}: cannot be written so that it reads back: {_one_line(exc)}") from None
    text = json.dumps(data, separators=(",", ":"))
    p = Path(path)
    if p.suffix == ".gz":
        with gzip.open(p, "wt", compresslevel=9) as fh:
            fh.write(text)
    else:
        p.write_text(text)
