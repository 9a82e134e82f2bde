"""The benchmark suite itself: a tiny run end to end, its files, and the agreement check firing."""

import csv
import dataclasses
import math
import re

import numpy as np
import pytest

from colorshare import SharingGraph, SolverError, evaluate, solve
from colorshare.bench import PRESETS, AgreementError, check_agreement
from colorshare.bench import solvers as bench_solvers
from colorshare.bench.compression import COMPRESSION_COLUMNS
from colorshare.bench.fidelity import FIDELITY_COLUMNS
from colorshare.bench.methods import allowed_groups
from colorshare.bench.solvers import SOLVER_COLUMNS, Instance, run_solvers
from colorshare.cli import main as cli_main


def _tiny(tmp_path, **kw):
    base = dict(out=tmp_path, models=(), budgets=(0.6,), time_limit=1.0, planted_sizes=(8,), ranked_layers=(),
                model_instances=(), measure_rounds=0,
                mycielski=(3,), sweep_instances=("planted-8",), sweep_limits=(0.5,), random_seeds=1,
                estimators=("layerwise", "fisher"), fidelity_colorings=12, progress=False)
    base.update(kw)
    return PRESETS["quick"].with_(**base)


def _read(path):
    with open(path, newline="") as fh:
        r = csv.DictReader(fh)
        return r.fieldnames, list(r)


def _row(instance, backend, objective, bound=None, status="optimal", limit=1.0):
    return {"instance": instance, "n_layers": 4, "backend": backend, "time_limit": limit, "objective": objective,
            "bound": bound if bound is not None else (objective if status == "optimal" else None), "gap": None,
            "status": status, "wall_time": 0.1}


# ---- agreement check ------------------------------------------------------------------------------------
def test_agreement_passes_on_consistent_rows():
    rows = [_row("a", "cpsat", 1.0), _row("a", "highs", 1.0 + 1e-9), _row("a", "anneal", 1.2, status="feasible"),
            _row("b", "highs", None, status="infeasible"), _row("b", "pulp", None, status="infeasible")]
    evidence = check_agreement(rows, {"b": "infeasible"})
    assert any("a: 2 exact" in e for e in evidence) and any("b: infeasible" in e for e in evidence)


@pytest.mark.parametrize("rows, known, needle", [
    ([_row("a", "cpsat", 1.0), _row("a", "highs", 1.5)], {}, "highs"),                    # two optima differ
    ([_row("a", "cpsat", 2.0, bound=1.9, status="feasible"), _row("a", "anneal", 1.5, status="feasible")],
     {}, "claims bound"),                                                                   # bound above a coloring
    ([_row("a", "highs", None, status="infeasible"), _row("a", "anneal", 3.0, status="feasible")], {}, "infeasible"),
    ([_row("a", "highs", 5820.0)], {"a": 5819.0}, "published optimum"),                      # published optimum
    ([_row("a", "cpsat", None, status="infeasible")], {"a": 0.0}, "published optimum"),
])
def test_agreement_fires(rows, known, needle):
    with pytest.raises(AgreementError, match=needle):
        check_agreement(rows, known)


def test_agreement_fires_on_a_deliberately_wrong_backend_result():
    """A backend that returns a worse coloring and claims it optimal (bound = its objective) is caught."""
    g = SharingGraph.from_matrix(np.array([[0, 1, 4, 4], [1, 0, 4, 4], [4, 4, 0, 2], [4, 4, 2, 0.0]]))
    inst = Instance("toy", "test", g, 2, None)

    def lying_solve(graph, budget, backend, **kw):
        sol = solve(graph, budget, backend=backend, **kw)
        if backend == "pulp":  # claim a coloring 10 % worse than the truth is optimal
            return dataclasses.replace(sol, objective=sol.objective * 1.1 + 1, bound=sol.objective * 1.1 + 1)
        return sol

    cfg = _tiny(None, backends=("cpsat", "highs", "pulp"), sweep_instances=())
    rows = run_solvers(cfg, [inst], solve_fn=lying_solve)
    assert check_agreement(run_solvers(cfg, [inst]))  # the honest run agrees
    with pytest.raises(AgreementError, match="pulp"):
        check_agreement(rows)


def test_suite_fails_loudly_and_keeps_the_evidence(tmp_path, monkeypatch, capsys):
    real = bench_solvers.solve

    def lying_solve(graph, budget, backend, **kw):
        sol = real(graph, budget, backend=backend, **kw)
        if backend == "highs" and sol.objective:
            return dataclasses.replace(sol, objective=2 * sol.objective, bound=2 * sol.objective)
        return sol

    monkeypatch.setattr(bench_solvers, "solve", lying_solve)
    code = cli_main(["bench", "--quick", "--out", str(tmp_path), "--sections", "solvers", "--models",
                     "--time-limit", "1", "--backends", "highs", "pulp", "--no-progress"])
    assert code == 1
    assert "BENCHMARK FAILED" in capsys.readouterr().out
    assert (tmp_path / "solvers.csv").exists() and "FAILED" in (tmp_path / "summary.md").read_text()


# ---- methods --------------------------------------------------------------------------------------------
def _two_families():
    cost = np.ones((10, 10)) - np.eye(10)
    return SharingGraph.from_matrix(cost, sizes=[4] * 5 + [9] * 5)


def _is_partition(groups, g):
    for members in g.family_members.values():
        mine = [grp for grp in groups if grp[0] in members]
        assert sorted(i for grp in mine for i in grp) == list(members)


def test_method_groups():
    g = _two_families()
    assert allowed_groups(g, "optimal") is None
    assert allowed_groups(g, "per-layer") == {(i,) for i in range(10)}
    assert allowed_groups(g, "all-shared") == {(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)}
    assert allowed_groups(g, "adjacent") == {(0, 1), (2, 3), (4,), (5, 6), (7, 8), (9,)}
    assert allowed_groups(g, "adjacent", k=3) == {(0, 1, 2), (3, 4), (5, 6, 7), (8, 9)}
    for seed in range(3):
        r = allowed_groups(g, "random", seed=seed)
        _is_partition(r, g)
        assert sorted(len(x) for x in r) == [1, 1, 2, 2, 2, 2]
    assert allowed_groups(g, "random", seed=0) != allowed_groups(g, "random", seed=1) or \
        allowed_groups(g, "random", seed=0) != allowed_groups(g, "random", seed=2)
    with pytest.raises(ValueError, match="similarity method needs a graph built from a model"):
        allowed_groups(g, "similarity")
    with pytest.raises(ValueError, match="unknown method 'best'"):
        allowed_groups(g, "best")


# ---- evaluate ---------------------------------------------------------------------------------------------
def test_evaluate_scores_a_given_coloring():
    g = _two_families()
    sol = solve(g, 30, backend="highs")
    assert sol.status == "optimal"
    again = evaluate(g, sol.classes, budget=30)
    assert again.objective == pytest.approx(sol.objective) and again.memory == sol.memory
    assert again.status == "feasible" and again.bound is None
    with pytest.raises(SolverError, match="placed layer"):
        evaluate(g, [((0, 1), "medoid")])
    with pytest.raises(SolverError, match="may not share"):
        evaluate(g, [((0, 5), "medoid")] + [((i,), "medoid") for i in (1, 2, 3, 4, 6, 7, 8, 9)])
    with pytest.raises(SolverError, match="over the budget"):
        evaluate(g, [((i,), "medoid") for i in range(10)], budget=10)


# ---- the whole suite, tiny ----------------------------------------------------------------------------------
def test_tiny_run_end_to_end(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from colorshare.bench import run_suite

    cfg = _tiny(tmp_path, models=("digits-mlp",), ranked_layers=(4,), optimal_curvatures=("trace",))
    res = run_suite(cfg)
    for name in ("solvers.csv", "compression.csv", "fidelity.csv", "summary.md", "gap_vs_time.png",
                 "time_vs_size.png", "performance_profile.png", "pareto_digits-mlp.png", "fidelity_digits-mlp.png"):
        assert (tmp_path / name).stat().st_size > 0, name

    cols, rows = _read(tmp_path / "solvers.csv")
    assert tuple(cols) == SOLVER_COLUMNS
    insts = {r["instance"] for r in rows}
    assert insts == {"planted-8", "ranked-28", "digits-mlp", "mycielski3@3", "mycielski3@2"}
    assert len(rows) == (len(insts) + 1) * 4  # every backend on every instance + one sweep limit on planted-8
    assert {r["status"] for r in rows if r["instance"] == "mycielski3@2" and r["backend"] != "anneal"} == {"infeasible"}
    assert res.agreement and not any("FAILED" in e for e in res.agreement)
    assert "Performance profile" in (tmp_path / "summary.md").read_text()

    cols, rows = _read(tmp_path / "compression.csv")
    assert tuple(cols) == COMPRESSION_COLUMNS
    dense = next(int(r["stored_parameters"]) for r in rows if r["method"] == "dense")
    methods = {r["method"] for r in rows}
    assert methods == {"dense", "optimal", "adjacent", "per-layer", "all-shared", "similarity", "random-s0",
                       "optimal-trace", "svd-uniform", "basis-sharing"}
    assert {r["metric"] for r in rows} == {"accuracy", "cross_entropy"}
    # (the papers' baselines take ranks off the menu and ignore the trust region: not restrictions of optimal's model)
    surrogate = {r["method"]: float(r["surrogate"]) for r in rows
                 if r["method"] not in ("dense", "optimal-trace", "svd-uniform", "basis-sharing")}
    for r in rows:
        if r["method"] != "dense":
            assert int(r["stored_parameters"]) <= 0.6 * dense
            assert 0.0 <= float(r["value"]) or r["metric"] == "cross_entropy"
    # optimal's columns contain every method's with classes of at most two layers (the graph's space), so its
    # surrogate is never worse than theirs (measured pricing is off here: it would change optimal's units)
    assert all(surrogate["optimal"] <= s + 1e-9 * max(1, s) for m, s in surrogate.items() if m != "all-shared")

    cols, rows = _read(tmp_path / "fidelity.csv")
    assert tuple(cols) == FIDELITY_COLUMNS
    assert {r["curvature"] for r in rows} == {"layerwise", "fisher"}
    per_est = [r for r in rows if r["curvature"] == "fisher"]
    assert len(per_est) >= 12 and len({r["coloring"] for r in per_est}) == len(per_est)
    assert all(math.isfinite(float(r["predicted"])) and math.isfinite(float(r["measured"])) for r in rows)

    text = (tmp_path / "summary.md").read_text()
    for needle in ("Machine:", "Spearman", "Largest instance", "Budget 60%", "highs"):
        assert needle in text
    # the report can be rebuilt from the files alone, to the same tables
    (tmp_path / "summary.md").unlink()
    assert cli_main(["bench", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").read_text().split("\n")[3:] == text.split("\n")[3:]


def test_models_outside_the_fidelity_study_are_priced_by_every_built_graph(tmp_path):
    """The SmolLM2 path: no further colorings; each compression coloring, baselines included, is priced by every
    graph the run built (the run's probed and the layerwise one), against its one measured loss."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import json

    from colorshare.bench import run_suite

    cfg = _tiny(tmp_path, models=("digits-mlp",), sections=("compression", "fidelity"), fidelity_models=(),
                optimal_curvatures=("layerwise",), budgets=(0.6, 0.4))
    run_suite(cfg)
    _, comp = _read(tmp_path / "compression.csv")
    _, fid = _read(tmp_path / "fidelity.csv")
    assert {r["curvature"] for r in fid} == {"probed", "layerwise"}
    labels = {f"{r['method']}@{float(r['budget_fraction']):g}" for r in comp if r["method"] != "dense"}
    for est in ("probed", "layerwise"):
        mine = {r["coloring"]: r for r in fid if r["curvature"] == est}
        assert set(mine) == labels  # every coloring, baselines included, priced by both graphs
        assert all(math.isfinite(float(r["predicted"])) for r in mine.values())
    measured = {}
    for r in fid:  # one measurement per coloring, whatever graph prices it
        assert measured.setdefault(r["coloring"], r["measured"]) == r["measured"]
    kfac = {r["coloring"]: float(r["predicted"]) for r in fid if r["curvature"] == "probed"}
    for r in comp:  # the run's own colorings: the prediction is the solver's objective
        if r["method"] in ("optimal", "per-layer", "svd-uniform") and r["metric"] == "accuracy":
            key = f"{r['method']}@{float(r['budget_fraction']):g}"
            assert kfac[key] == pytest.approx(float(r["surrogate"]), rel=1e-9)
    saved = json.loads((tmp_path / "colorings.json").read_text())["digits-mlp"]
    assert {c["name"] for c in saved} == labels and all(c["classes"] for c in saved)


def test_bench_cli_rejects_bad_arguments(capsys):
    for args, needle in ((["--budgets", "1.5"], "--budgets"), (["--time-limit", "-1"], "--time-limit"),
                         (["--backends", "gurobi"], "unknown backend 'gurobi'")):
        with pytest.raises(SystemExit) as exc:
            cli_main(["bench", "--quick", *args])
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err


# ---- the cost cap under a restriction -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["cpsat", "highs", "pulp"])
def test_restricted_setpart_is_exact_although_greedy_uses_a_forbidden_group(backend):
    """solve() caps column costs at the greedy coloring's cost; with a group filter that forbids the greedy's
    groups, the cap would cut the restricted optimum, so it must not apply."""
    from conftest import set_partitions

    cost = np.array([[0, 1, 9, 9, 9], [1, 0, 9, 9, 9], [9, 9, 0, 9, 9], [9, 9, 9, 0, 2], [9, 9, 9, 2, 0.0]])
    g = SharingGraph.from_matrix(cost, sizes=[5] * 5)
    allowed = {(0,), (1,), (2,), (3,), (4,), (0, 2), (1, 2), (0, 3), (2, 4)}
    sol = solve(g, 15, backend=backend, formulation="setpart", group_filter=allowed.__contains__)
    best = min(sum(g.best_option(tuple(sorted(p))).cost for p in part)
               for part in set_partitions(list(range(5)))
               if all(tuple(sorted(p)) in allowed for p in part) and len(part) * 5 <= 15)
    assert sol.status == "optimal" and sol.objective == pytest.approx(best)
    assert sol.objective > solve(g, 15, backend=backend).objective  # the greedy's groups were indeed forbidden


@pytest.mark.parametrize("backend", ["cpsat", "highs", "pulp"])
def test_explicit_candidate_groups_equal_the_filter_and_scale(backend):
    """``groups=`` builds exactly the listed groups: the same optimum as the equivalent filter on a small graph,
    and on a 40-layer family (2^40 subsets: a filter would enumerate them all) it answers at once."""
    from conftest import set_partitions

    cost = np.array([[0, 1, 9, 9, 9], [1, 0, 9, 9, 9], [9, 9, 0, 9, 9], [9, 9, 9, 0, 2], [9, 9, 9, 2, 0.0]])
    g = SharingGraph.from_matrix(cost, sizes=[5] * 5)
    allowed = [(0,), (1,), (2,), (3,), (4,), (0, 2), (1, 2), (0, 3), (2, 4)]
    a = solve(g, 15, backend=backend, formulation="setpart", groups=allowed)
    b = solve(g, 15, backend=backend, formulation="setpart", group_filter=set(allowed).__contains__)
    best = min(sum(g.best_option(tuple(sorted(p))).cost for p in part) for part in set_partitions(list(range(5)))
               if all(tuple(sorted(p)) in allowed for p in part) and len(part) * 5 <= 15)
    assert a.status == b.status == "optimal" and a.objective == pytest.approx(best) == pytest.approx(b.objective)
    assert all(c.members in allowed for c in a.classes)

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 2))
    big = SharingGraph.from_matrix(((pts[:, None] - pts[None]) ** 2).sum(-1), sizes=[3] * 40)
    pairs = [(i, i + 1) for i in range(0, 40, 2)]
    sol = solve(big, 60, backend=backend, formulation="setpart", groups=pairs, time_limit=30)
    assert sol.status == "optimal" and sorted(c.members for c in sol.classes) == pairs


@pytest.mark.parametrize("groups, needle", [
    ([(0,), (1,)], "layer 'layer2' is in no candidate group"),
    ([(0,), (1,), (2,), (0, 7)], "outside 0..2"),
    ("01", "iterable of layer-index tuples"),
    ([(0,), (1,), ("a",)], "is not a tuple of layer indices"),
])
def test_bad_candidate_groups_are_named(groups, needle):
    g = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 1], [2, 1, 0]])
    with pytest.raises(ValueError, match=re.escape(needle)):
        solve(g, 3, backend="highs", formulation="setpart", groups=groups)


def test_bench_cli_names_what_is_missing(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--quick", "--models", "digits-mlp"])
    assert exc.value.code == 2 and "need torch" in capsys.readouterr().err


def test_bench_cli_rejects_cuda_without_a_device(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--quick", "--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_result_rows_carry_their_fields():
    from colorshare.bench.results import compression_row, fidelity_row, split_label

    assert split_label("random-s12") == ("random", 12)
    assert split_label("random-partition-3") == ("random-partition-3", None)
    assert split_label("optimal-layerwise") == ("optimal-layerwise", None)
    r = compression_row("m", "random-s1", 0.5, 10, 0.1, "accuracy", 0.9)
    assert (r["label"], r["method"], r["seed"], r["budget_fraction"]) == ("random-s1", "random", 1, 0.5)
    f = fidelity_row("m", "kfac", "optimal-trace@0.7", 1.0, 2.0)
    assert (f["method"], f["budget_fraction"]) == ("optimal-trace", 0.7)
    f = fidelity_row("m", "kfac", "random-partition-4", 1.0, 2.0)
    assert (f["method"], f["budget_fraction"]) == ("random-partition", None)


def test_performance_profile_ratios():
    from colorshare.bench.solvers import performance_profile

    rows = [_row("a", "highs", 1.0), _row("a", "cpsat", 1.0), _row("b", "highs", 2.0),
            _row("b", "cpsat", 2.0, status="feasible"), _row("c", "highs", 1.0, status="feasible"),
            _row("c", "cpsat", 1.0, status="feasible")]
    rows[1]["wall_time"] = 0.3  # cpsat proves a in 0.3 s, highs in 0.1 s
    prof = performance_profile(rows, 1.0)
    assert prof["highs"] == [1.0, 1.0]  # c is proven by nobody: left out
    assert prof["cpsat"][0] == pytest.approx(3.0) and prof["cpsat"][1] == float("inf")
    from colorshare.bench.solvers import profile_share

    assert profile_share(prof["cpsat"], float("inf")) == 0.5  # a backend that proved nothing is not "proven at all"
    assert profile_share([float("inf")] * 3, float("inf")) == 0.0 and profile_share(prof["highs"], 1.0) == 1.0


def test_model_instances_are_read_one_per_budget(tmp_path):
    pytest.importorskip("torch")
    from colorshare.bench.solvers import model_instances
    from colorshare.instance_file import save_instance
    from colorshare.torch import build_graph
    from colorshare.torch.models import planted_stack

    model, batches = planted_stack(families=2, layers=4, width=16, seed=0)
    g = build_graph(model, batches, curvature="kfac", ranks=[4, 8], progress=False)
    solve(g, 0.5 * g.dense_size, backend="highs")
    save_instance(g, tmp_path / "toy.json.gz", budgets=[int(0.7 * g.dense_size), int(0.5 * g.dense_size)])
    with pytest.warns(UserWarning, match="missing"):
        insts = model_instances(["toy", "absent"], tmp_path)
    assert [i.name for i in insts] == ["toy@70%", "toy@50%"]
    assert insts[0].graph.max_group_size == 2 and insts[0].graph.cost_model.has_bounds
    for inst in insts:
        s = solve(inst.graph, inst.budget, backend="highs", time_limit=30)
        assert s.colors is not None and s.bound is not None and s.bound <= s.objective + 1e-12
