"""Instance files against bad input: every file either reads to a graph that solves, or is refused with one line
``<file>: <field>: <what is wrong>`` (a ValueError), never another exception; the reported cases one by one."""

from __future__ import annotations

import copy
import gzip
import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorshare import SharingGraph, solve
from colorshare.cli import main
from colorshare.instance_file import (
    MAX_COST,
    MAX_MEMORY,
    _floor_digits,
    graph_from_dict,
    graph_to_dict,
    read_instance,
    save_instance,
)


def _fuzz(examples: int) -> settings:
    """Few examples, always the same ones (a few hundred in all, well under 30 s)."""
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_COSTS = st.one_of(st.floats(0, 10, allow_nan=False, allow_infinity=False), st.integers(0, 5))
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 8), st.text(max_size=4),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1, -(2**63), 2**50, 2**50 + 1, 2**53, 2**62, 2**62 + 1, 2**63, 2**64, 10**400, -(10**400),
                     1e308, -1e308, 1e100, 1.0000001e100, 5e-324, -0.0, 4.0, 0.5, float("nan"), float("inf")]),
)
_JUNK = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["members", "options", "x", "cost", "label", ""]), inner,
                                       max_size=3), max_leaves=6)


@st.composite
def instances(draw: st.DrawFn, kinds: tuple[str, ...] = ("cost", "pairwise", "groups")) -> dict[str, Any]:
    """A small valid instance (JSON object) of one of ``kinds``."""
    n = draw(st.integers(1, 5))
    fam_of = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    size_of = {f: draw(st.sampled_from([1, 4, 64, 2**20])) for f in sorted(set(fam_of))}
    sizes = [size_of[f] for f in fam_of]
    data: dict[str, Any] = {"sizes": sizes, "families": [f"f{f}" for f in fam_of]}
    pairs = list(combinations(range(n), 2))
    conflicts = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=2)) if pairs else []
    names = [f"L{i}" for i in range(n)]
    if draw(st.booleans()):
        data["names"] = names
        data["conflicts"] = [[names[a], b] for a, b in conflicts]
    else:
        data["conflicts"] = [list(p) for p in conflicts]
    kind = draw(st.sampled_from(kinds))
    if kind == "cost":
        data["cost"] = [[0 if i == j else draw(_COSTS) for j in range(n)] for i in range(n)]
    elif kind == "pairwise":
        w = [[0.0] * n for _ in range(n)]
        for a, b in pairs:
            w[a][b] = w[b][a] = draw(_COSTS)
        data["pairwise"] = w
    else:
        _groups(draw, data, n, fam_of, set(conflicts))
    if draw(st.booleans()):
        data["budgets"] = [sum(sizes) // 2, sum(sizes)]
    if draw(st.booleans()):
        data["max_group_size"] = draw(st.integers(1, 3))
    return data


def _option(draw: st.DrawFn, size: int, k: int) -> Any:
    action = draw(st.sampled_from(["tie", "basis", "dense"]))
    cost, memory = draw(_COSTS), draw(st.integers(0, 2 * size))
    form = draw(st.integers(0, 2))
    if form == 0:
        return [action, cost, memory]
    if form == 1:
        return [action, cost, memory, {"rank": k}]
    return {"action": action, "cost": cost, "memory": memory, "params": {"rank": k}}


def _groups(draw: st.DrawFn, data: dict[str, Any], n: int, fam_of: list[int], conflicts: set[tuple[int, int]]) -> None:
    """Fill a ``groups`` instance: every layer's own options, some formable groups, maybe scopes and bounds."""
    sizes = data["sizes"]
    groups = [{"members": [i], "options": [["dense", 0.0, sizes[i]]]
               + [_option(draw, sizes[i], k) for k in range(draw(st.integers(0, 2)))]} for i in range(n)]
    scopes = []
    if n >= 2 and draw(st.booleans()):
        scopes = [sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=n, unique=True)))]
        data["scopes"] = scopes

    def formable(g: tuple[int, ...]) -> bool:
        free = all(p not in conflicts for p in combinations(g, 2))
        return free and (len({fam_of[i] for i in g}) == 1 or any(set(g) <= set(sc) for sc in scopes))

    candidates = [g for k in (2, 3) for g in combinations(range(n), k) if formable(g)]
    for g in draw(st.lists(st.sampled_from(candidates), unique=True, max_size=4)) if candidates else []:
        members = list(g)[::-1] if draw(st.booleans()) else list(g)  # any order
        groups.append({"members": members, "options": [_option(draw, sizes[g[0]], k)
                                                       for k in range(draw(st.integers(1, 3)))]})
    data["groups"] = groups
    if draw(st.booleans()):  # valid (trivial or small) lower bounds for every family
        fams: dict[str, int] = {}
        for f in data["families"]:
            fams[f] = fams.get(f, 0) + 1
        data["bounds"] = {f: [{"label": "b", "fixed": 0, "per_member": 0, "costs": [0.0] * m,
                               "excess": None if draw(st.booleans()) else [[0.0] * m for _ in range(m)]}]
                          for f, m in fams.items()}


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, path + (i,))
    return out


def _mutate(draw: st.DrawFn, data: Any) -> Any:
    """One change somewhere in the object: drop, replace with junk, duplicate, negate, push out of range, ..."""
    paths = _paths(data)
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(_JUNK) if draw(st.booleans()) else data
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    value = parent[key]
    op = draw(st.sampled_from(["drop", "junk", "dup", "negate", "outside", "reverse", "add_key", "wrong_type"]))
    if op == "drop":
        del parent[key]
    elif op == "junk":
        parent[key] = draw(_JUNK)
    elif op == "dup" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(value))
    elif op == "negate" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = -value - 1
    elif op == "outside" and isinstance(value, int) and not isinstance(value, bool):
        parent[key] = value + draw(st.sampled_from([5, 2**50, 2**62, 2**63]))
    elif op == "reverse" and isinstance(value, list):
        value.reverse()
    elif op == "add_key" and isinstance(value, dict):
        value[draw(st.sampled_from(["junk", "members", "excess", "cost"]))] = draw(_JUNK)
    elif op == "wrong_type":
        parent[key] = str(value)[:10] if not isinstance(value, str) else [value]
    return data


def _read(path: Path) -> tuple[SharingGraph, dict[str, Any]] | None:
    """The file's graph, or None where it is refused as the contract says (anything else fails the test)."""
    try:
        return read_instance(path)
    except ValueError as exc:
        msg = str(exc)
        assert msg.startswith(f"{path}: "), msg
        assert "\n" not in msg and len(msg) < 1000, msg
        return None


def _solves(g: SharingGraph, budget: float) -> None:
    """``solve`` with HiGHS gives an answer (verified inside solve) or refuses the budget, nothing else."""
    try:
        sol = solve(g, budget, backend="highs", time_limit=5)
    except ValueError as exc:
        assert "budget" in str(exc), exc
        return
    if sol.colors is not None:
        assert len(sol.colors) == g.n and sol.memory is not None and sol.memory <= budget * (1 + 1e-9) + 1e-6


def _budget(draw: st.DrawFn, g: SharingGraph) -> float:
    return draw(st.sampled_from([0.0, 0.3 * g.dense_size, 0.5 * g.dense_size, float(g.dense_size), math.inf]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@_fuzz(60)
@given(data=instances(), d=st.data())
def test_valid_instances_read_solve_and_round_trip(folder: Path, data: dict[str, Any], d: st.DataObject) -> None:
    path = folder / "valid.json"
    path.write_text(json.dumps(data))
    g, extra = read_instance(path)
    assert extra.get("budgets") == data.get("budgets")
    _solves(g, _budget(d.draw, g))
    back = folder / "back.json.gz"
    save_instance(g, back)
    h = read_instance(back)[0]
    assert h.n == g.n and h.kind == g.kind and h.conflicts == g.conflicts and h.families == g.families
    if g.kind == "group":
        assert h.cost_model.evaluated() == g.cost_model.evaluated()


@_fuzz(150)
@given(data=instances(), d=st.data())
def test_mutated_instances_read_or_are_refused_in_one_line(folder: Path, data: dict[str, Any],
                                                          d: st.DataObject) -> None:
    for _ in range(d.draw(st.integers(1, 3))):
        data = _mutate(d.draw, data)
    path = folder / "mutated.json"
    path.write_text(json.dumps(data))
    got = _read(path)
    if got is not None:
        _solves(got[0], _budget(d.draw, got[0]))


@_fuzz(60)
@given(data=instances(), d=st.data())
def test_damaged_text_and_gzip_are_refused_in_one_line(folder: Path, data: dict[str, Any], d: st.DataObject) -> None:
    text = json.dumps(data).encode()
    how = d.draw(st.sampled_from(["truncate", "byte", "gz_truncate", "gz_byte", "gz_plain", "garbage"]))
    cut = d.draw(st.integers(0, len(text)))
    if how == "truncate":
        raw, name = text[:cut], "t.json"
    elif how == "byte":
        raw, name = text[:cut] + bytes([d.draw(st.integers(0, 255))]) + text[cut + 1:], "b.json"
    elif how.startswith("gz"):
        z = gzip.compress(text)
        k = d.draw(st.integers(0, len(z) - 1))
        raw = {"gz_truncate": z[:k], "gz_byte": z[:k] + bytes([z[k] ^ d.draw(st.integers(1, 255))]) + z[k + 1:],
               "gz_plain": text}[how]
        name = d.draw(st.sampled_from(["g.json.gz", "g.json"]))  # gzip is recognised by its magic bytes too
    else:
        raw, name = d.draw(st.binary(max_size=40)), d.draw(st.sampled_from(["x.json", "x.json.gz"]))
    path = folder / name
    path.write_bytes(raw)
    got = _read(path)
    if got is not None:
        _solves(got[0], _budget(d.draw, got[0]))


@_fuzz(40)
@given(data=instances(kinds=("groups",)), d=st.data())
def test_random_bounds_are_refused_or_never_break_a_proof(folder: Path, data: dict[str, Any],
                                                          d: st.DataObject) -> None:
    sizes: dict[str, int] = {}
    for f in data["families"]:
        sizes[f] = sizes.get(f, 0) + 1
    bounds = {}
    for f, m in sizes.items():
        kinds = []
        for _ in range(d.draw(st.integers(0, 2))):
            excess = None
            if d.draw(st.booleans()):
                excess = [[0.0] * m for _ in range(m)]
                for a, b in combinations(range(m), 2):
                    excess[a][b] = excess[b][a] = d.draw(st.floats(-0.5, 0.5))
            kinds.append({"label": "k", "fixed": d.draw(st.integers(0, 4)), "per_member": d.draw(st.integers(0, 4)),
                          "costs": d.draw(st.lists(st.none() | st.floats(0, 2), min_size=m, max_size=m)),
                          "excess": excess})
        bounds[f] = kinds
    data["bounds"] = bounds
    path = folder / "bounds.json"
    path.write_text(json.dumps(data))
    got = _read(path)
    if got is not None:  # bounds that hold for every listed option: no proof is broken (SolverError)
        for fraction in (0.3, 0.6, 1.0):
            _solves(got[0], fraction * got[0].dense_size)


@_fuzz(25)
@given(data=instances(), d=st.data())
def test_cli_solve_errors_are_one_line(folder: Path, data: dict[str, Any], d: st.DataObject) -> None:
    data = _mutate(d.draw, data)
    path = folder / "cli.json"
    path.write_text(json.dumps(data))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["solve", str(path), "--budget", "50%", "--backend", "highs", "--time-limit", "5"])
    assert rc in (0, 2, 3)
    if err.getvalue():
        assert rc == 2 and err.getvalue().startswith(f"colorshare: error: {path}: ")
        assert err.getvalue().count("\n") == 1, err.getvalue()


@_fuzz(40)
@given(x=st.floats(-1e100, 1e100, allow_nan=False))
def test_written_excess_is_rounded_down(x: float) -> None:
    v = _floor_digits([[x]])[0][0]  # type: ignore[arg-type]
    assert v <= x and (x - v) <= 1e-6 * abs(x) + 1e-300 and (v < 0) == (x < 0 and v != 0)


# ---- the reported cases -------------------------------------------------------------------------------------

_BASE: dict[str, Any] = {"sizes": [4, 4, 4], "groups": [
    {"members": [0], "options": [["dense", 0.0, 4]]}, {"members": [1], "options": [["dense", 0.0, 4]]},
    {"members": [2], "options": [["dense", 0.0, 4]]}, {"members": [0, 1], "options": [["tie", 0.5, 4]]}]}


def _refused(tmp_path: Path, data: Any, *words: str, name: str = "case.json") -> str:
    """Write ``data`` (an object as JSON, text or bytes as is), check that both the reader and ``colorshare solve``
    refuse it in one line ``<file>: ...`` with ``words`` in it; the message."""
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(ValueError) as info:
        read_instance(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert main(["solve", str(path), "--budget", "8", "--backend", "highs"]) == 2
    assert err.getvalue() == f"colorshare: error: {msg}\n"
    return msg


def _with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(_BASE)
    data.update(changes)
    return data


def _plus_group(members: Any, options: Any = (("tie", 0.1, 4),)) -> dict[str, Any]:
    data = copy.deepcopy(_BASE)
    data["groups"].append({"members": members, "options": [list(o) for o in options]})
    return data


@pytest.mark.parametrize("members", [[-1], [-1, 0], [3], [0, 7], [0.0], [True], ["0"], [2**64]])
def test_a_group_member_out_of_range_is_refused(tmp_path: Path, members: list[Any]) -> None:
    _refused(tmp_path, _plus_group(members, [("dense", 0.0, 4)]), "groups[4].members[", "layer index", "0..2")


def test_every_other_index_is_range_checked(tmp_path: Path) -> None:
    _refused(tmp_path, _with(conflicts=[[0, -1]]), "conflicts[0][1]", "0..2")
    _refused(tmp_path, _with(conflicts=[[0, 3]]), "conflicts[0][1]", "0..2")
    _refused(tmp_path, _with(conflicts=[[1, 1]]), "conflicts[0]", "twice")
    _refused(tmp_path, _with(scopes=[[0, -2]]), "scopes[0][1]", "0..2")
    _refused(tmp_path, _with(scopes=[[0, 1, 1]]), "scopes[0]", "twice")
    _refused(tmp_path, _with(scopes=[[0, 1], [1, 0]]), "scopes[1]", "scopes[0]")
    rep = _plus_group([1, 2], [])
    rep["groups"][4]["options"] = [{"action": "medoid", "cost": 1.0, "memory": 4, "representative": -1}]
    _refused(tmp_path, rep, "groups[4].options[0].representative")
    rep["groups"][4]["options"] = [["medoid", 1.0, 4, {"representative": 0}]]
    _refused(tmp_path, rep, "groups[4].options[0].params.representative", "member of the group")
    bounds = {"size=4": [{"label": "b", "fixed": 0, "per_member": 0, "costs": [0, 0], "excess": None}]}
    _refused(tmp_path, _with(bounds=bounds), "bounds['size=4'][0].costs", "2 entries; expected 3")


def test_bounds_above_a_listed_option_are_refused(tmp_path: Path) -> None:
    bound = {"label": "tie", "fixed": 4, "per_member": 0, "costs": [0.2, 0.2, 0.0], "excess": None}
    data = _with(bounds={"size=4": [bound]})
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(data))  # (0, 1) ties at cost 0.5 >= 0.2 + 0.2, memory 4 >= 4
    assert solve(read_instance(path)[0], 8, backend="highs").objective == pytest.approx(0.5)
    bound["costs"] = [0.3, 0.3, 0.0]
    _refused(tmp_path, data, "groups[3].options[0]", "below every bound", "bounds['size=4']")
    bound["costs"], bound["fixed"] = [0.2, 0.2, 0.0], 5
    _refused(tmp_path, data, "groups[3].options[0]", "memory 4")
    data["bounds"]["size=4"] = []
    _refused(tmp_path, data, "groups[3].options[0]", "no group of 2+ may form")


@pytest.mark.parametrize("members", [[0, 1], [1, 0]])
def test_a_repeated_group_is_refused_naming_both(tmp_path: Path, members: list[int]) -> None:
    _refused(tmp_path, _plus_group(members, [("tie", 0.0, 1)]), "groups[4]", "[0, 1]", "groups[3]")


def test_a_member_repeated_in_a_group_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _plus_group([1, 1]), "groups[4].members", "layer 1 is listed twice")


def test_a_group_that_may_never_form_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _with(conflicts=[[0, 1]]), "groups[3].members", "conflict")


@pytest.mark.parametrize("sizes", [[2**62] * 3, [2**63] * 3, [2**50 + 1] * 3, [0, 4, 4], [-4, 4, 4], [4.0, 4, 4],
                                   [4.5, 4, 4], [10**400, 4, 4]])
def test_sizes_out_of_bounds_or_not_integers_are_refused(tmp_path: Path, sizes: list[Any]) -> None:
    _refused(tmp_path, {"cost": [[0, 1, 1], [1, 0, 1], [1, 1, 0]], "sizes": sizes}, "sizes[0]", "2**50")
    _refused(tmp_path, _with(sizes=sizes), "sizes[0]", "2**50")


def test_memories_are_bounded_one_by_one_and_in_total(tmp_path: Path) -> None:
    for memory in (2**63, 2**62, MAX_MEMORY + 1, -1, 4.0, float("nan"), None, "4"):
        _refused(tmp_path, _plus_group([1, 2], [("tie", 0.0, memory)]), "groups[4].options[0].memory", "2**50")
    many = {"sizes": [MAX_MEMORY] * 9, "groups": [{"members": [i], "options": [["dense", 0.0, MAX_MEMORY]]}
                                                  for i in range(9)]}
    _refused(tmp_path, many, "sizes", "2**53")
    _refused(tmp_path, {"sizes": [MAX_MEMORY] * 9, "pairwise": [[0] * 9 for _ in range(9)]}, "sizes", "2**53")
    ok = {"sizes": [MAX_MEMORY] * 2, "groups": [{"members": [i], "options": [["dense", 0.0, MAX_MEMORY]]}
                                                for i in range(2)]}
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(ok))
    assert solve(read_instance(path)[0], 2 * MAX_MEMORY, backend="highs").status == "optimal"


@pytest.mark.parametrize("cost", [1e308, 1.0000001e100, -1, float("nan"), float("inf"), -float("inf"), 10**400])
def test_costs_out_of_bounds_are_refused(tmp_path: Path, cost: Any) -> None:
    _refused(tmp_path, {"cost": [[0, cost], [1, 0]]}, "cost[0][1]", "1e100")
    _refused(tmp_path, {"pairwise": [[0, cost], [cost, 0]]}, "pairwise[0][1]", "1e100")
    _refused(tmp_path, _plus_group([1, 2], [("tie", cost, 4)]), "groups[4].options[0].cost", "1e100")
    excess = [[0, cost, 0], [cost, 0, 0], [0, 0, 0]]
    bounds = {"size=4": [{"label": "b", "fixed": 0, "per_member": 0, "costs": [0, 0, 0], "excess": excess}]}
    if cost != -1:  # a pair's excess may be negative (a pair priced below its members' sum)
        _refused(tmp_path, _with(bounds=bounds), "bounds['size=4'][0].excess[0][1]", "1e100")


def test_the_largest_numbers_solve(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    big = [[0, MAX_COST, MAX_COST / 3], [MAX_COST, 0, MAX_COST], [MAX_COST / 2, MAX_COST, 0]]
    path.write_text(json.dumps({"cost": big, "sizes": [MAX_MEMORY] * 3}))
    g = read_instance(path)[0]
    for k, objective in ((1, 4 * MAX_COST / 3), (2, MAX_COST / 3), (3, 0.0)):
        sol = solve(g, k * MAX_MEMORY, backend="highs", time_limit=30)
        assert sol.status == "optimal" and sol.objective == pytest.approx(objective, rel=1e-9)
    assert solve(g, 2 * MAX_MEMORY - 1, backend="highs").objective == pytest.approx(4 * MAX_COST / 3)  # exact
    assert solve(g, MAX_MEMORY - 1, backend="highs").status == "infeasible"


@pytest.mark.parametrize("budgets", [[-1], [2**60], [float("nan")], ["1"], 5])
def test_budgets_in_the_file_are_checked(tmp_path: Path, budgets: Any) -> None:
    _refused(tmp_path, _with(budgets=budgets), "budgets", "budget")


_BAD_TEXTS = [
    ('{"cost": [[0, 1], [1, 0]]', ("not valid JSON",)),
    ("", ("not valid JSON",)),
    ("[" * 100000 + "]" * 100000, ("not valid JSON (nested too deeply)",)),
    ('{"cost": [[0, ' + "1" * 5000 + "], [1, 0]]}", ("not valid JSON",)),
    ("[1, 2]", ("instance: an instance must be a JSON object",)),
    ('{"cost": [[0, 1], [1, 0]], "cots": 1}', ("instance: unknown key(s) 'cots'",)),
    ('{"sizes": [1]}', ("exactly one of",)),
    ('{"groups": [], "sizes": [1]}', ("groups: layer 0 is in no group",)),
    ('{"groups": [{"members": [0], "options": [["dense", 0, 1]], "extra": 1}], "sizes": [1]}', ("groups[0]",)),
    ('{"cost": [[0, 1], [1, 0]], "bounds": {}}', ("bounds: only a 'groups' instance",)),
    ('{"cost": [[0, 1], [2, 0]], "sizes": [1, 2], "families": ["a", "a"]}', ("families[1]", "mixes layer sizes")),
    ('{"pairwise": [[0, 1], [2, 0]]}', ("pairwise[0][1]", "symmetric")),
    ('{"cost": [[0, 1], [1, 1]]}', ("cost[1][1]", "diagonal")),
    ('{"cost": [[0, 1], [1, 0]], "names": ["a", "a"]}', ("names[1]", "layer 0")),
    ('{"cost": [[0, 1], [1, 0]], "conflicts": [["a", 1]]}', ("conflicts[0][0]", "no layer is named 'a'")),
]


@pytest.mark.parametrize("text, words", _BAD_TEXTS, ids=[str(k) for k in range(len(_BAD_TEXTS))])
def test_bad_json_is_one_line(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    _refused(tmp_path, text, *words)


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    for name, raw, words in [("a.json.gz", b"not gzip", "cannot read it"),
                             ("b.json.gz", gzip.compress(b'{"cost": [[0]]}')[:-5], "cannot read it"),
                             ("c.json", b"\x1f\x8b" + bytes(30), "cannot read it"),
                             ("d.json", b"\xff\xfe{}", "not UTF-8 text")]:
        _refused(tmp_path, raw, f"{tmp_path / name}: {words}", name=name)
    with pytest.raises(ValueError, match=r"^\S*missing\.json: cannot read it \(\[Errno 2\]"):
        read_instance(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r": cannot read it"):
        read_instance(tmp_path)


def test_graph_from_dict_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^groups\[0\]\.options\[0\]\.memory: a memory must be"):
        graph_from_dict({"sizes": [1], "groups": [{"members": [0], "options": [["dense", 0, 2**63]]}]})


def test_save_refuses_what_would_not_read_back(tmp_path: Path) -> None:
    g = SharingGraph.from_groups({(0,): [("dense", 0.0, 4)], (1,): [("dense", 0.0, 2**60)]}, sizes=[4, 4])
    with pytest.raises(ValueError, match=r"groups\[1\]\.options\[0\]\.memory"):
        save_instance(g, tmp_path / "g.json")
    assert not (tmp_path / "g.json").exists()
    h = SharingGraph.from_groups({(0,): [("dense", 0.0, 4)], (1,): [("dense", 0.0, 4)]}, sizes=[4, 4])
    save_instance(h, tmp_path / "h.json", budgets=[4], about="two layers")
    assert read_instance(tmp_path / "h.json")[1] == {"budgets": [4], "about": "two layers"}
    assert graph_to_dict(h)["groups"][1]["members"] == [1]
