"""Generated columns against full enumeration, on families small enough to enumerate."""

import math

import pytest

torch = pytest.importorskip("torch")

from colorshare import solve  # noqa: E402
from colorshare.torch import build_graph  # noqa: E402
from colorshare.torch.models import planted_stack  # noqa: E402


@pytest.fixture(scope="module")
def graphs():
    model, batches = planted_stack(families=2, layers=6, width=16, seed=1)
    out = {}
    for cur in ("layerwise", "kfac"):
        out[cur] = build_graph(model, batches, curvature=cur, actions=("basis", "dense"), ranks=[2, 4, 6, 8, 12],
                               trust_region=None, progress=False)
    out["trust"] = build_graph(model, batches, curvature="layerwise", actions=("basis", "dense"),
                               ranks=[2, 4, 6, 8, 12], trust_region=0.3, progress=False)
    return out


@pytest.mark.parametrize("which", ["layerwise", "kfac", "trust"])
@pytest.mark.parametrize("frac", [0.3, 0.45, 0.7])
@pytest.mark.parametrize("cap", [None, 2])
def test_generated_columns_never_beat_enumeration_and_bound_it(graphs, which, frac, cap):
    g = graphs[which]
    opts = {} if cap is None else {"max_group_size": cap}
    full = solve(g, frac * g.dense_size, backend="highs", columns="all", **opts)
    gen = solve(g, frac * g.dense_size, backend="highs", columns="generate", **opts)
    if full.status == "infeasible":
        assert gen.colors is None
        return
    assert full.status == "optimal"
    assert gen.colors is not None and gen.memory <= frac * g.dense_size
    # the generated master is a restriction: never below the true optimum
    assert gen.objective >= full.objective * (1 - 1e-9) - 1e-12
    # its bound is a valid global lower bound
    assert gen.bound is not None and gen.bound <= full.objective * (1 + 1e-9) + 1e-12
    assert "generated columns" in gen.facts["restricted"]
    if gen.status == "optimal":
        assert gen.objective == pytest.approx(full.objective, rel=1e-6, abs=1e-12)
    # on these planted families generation comes close (groups of 5-6 are not listed: GENERATED_GROUP_SIZE = 4)
    assert gen.objective == pytest.approx(full.objective, rel=0.02, abs=1e-12)


def test_auto_generates_above_the_enumeration_limit_and_reports_honestly(graphs, monkeypatch):
    import colorshare.solvers.api as api

    g = graphs["layerwise"]
    assert "column_generation" not in solve(g, 0.5 * g.dense_size, backend="highs").facts  # 126 groups: enumerated
    monkeypatch.setattr(api, "MAX_ENUMERATED_GROUPS", 10)
    sol = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=30)
    assert sol.facts["column_generation"]["rounds"] >= 1
    assert sol.status in ("optimal", "feasible")
    if sol.status == "optimal":
        assert sol.gap is not None and sol.gap <= 1e-6
    else:
        assert sol.gap is None or sol.gap > 1e-6


def test_columns_option_is_validated(graphs):
    g = graphs["layerwise"]
    with pytest.raises(ValueError, match="columns"):
        solve(g, 0.5 * g.dense_size, backend="highs", columns="some")


def test_trust_region_changes_the_answer():
    """Cap every layer's relative whitened error below what the unconstrained optimum takes: the capped optimum
    respects the cap, and costs more (or the budget becomes infeasible)."""
    model, batches = planted_stack(families=2, layers=6, width=16, seed=1)
    kw = dict(curvature="layerwise", actions=("basis", "dense"), ranks=[2, 4, 6, 8, 12], progress=False)
    free = build_graph(model, batches, trust_region=None, **kw)

    def worst(g, sol):
        out = 0.0
        for c in sol.classes:
            if c.action == "basis":
                spec = g._spectrum(c.members)
                out = max(out, float(spec.rel_err[:, min(c.params["rank"], len(spec.vals))].max()))
        return out

    a = solve(free, 0.3 * free.dense_size, backend="highs", columns="all")
    assert a.status == "optimal"
    cap = 0.5 * worst(free, a)
    assert cap > 0
    capped = build_graph(model, batches, trust_region=cap, **kw)
    b = solve(capped, 0.3 * capped.dense_size, backend="highs", columns="all")
    assert b.status in ("optimal", "infeasible")
    if b.status == "optimal":
        assert worst(capped, b) <= cap + 1e-9
        assert b.objective > a.objective
    assert math.isfinite(a.objective)
