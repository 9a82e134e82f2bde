"""Family bounds (colorshare.formulations.bounds): the pricing algebra against brute force over every group,
and a model graph's bounds against the exact cost of every option of every group of small families."""

import itertools
import math

import numpy as np
import pytest

from colorshare.formulations.bounds import FamilyBound, KindBound, _k_subsets_in_order, matching_factor


def _random_family(n, kinds, seed, with_excess=True):
    rng = np.random.default_rng(seed)
    out = []
    for a in range(kinds):
        costs = rng.random(n)
        if a == 0:
            costs[rng.integers(n)] = np.inf  # a member without this kind
        E = None
        if with_excess:
            E = rng.random((n, n)) * (rng.random((n, n)) < 0.7)
            E = np.triu(E, 1)
            E = E + E.T
        out.append(KindBound(f"k{a}", int(rng.integers(0, 5)), int(rng.integers(0, 3)), costs, E))
    return FamilyBound(out)


def _groups(n, lo, hi):
    for k in range(lo, hi + 1):
        yield from itertools.combinations(range(n), k)


def _direct(fb, pi, lam, S):
    """The bound of group S straight from the definition."""
    best = math.inf
    for kb in fb.kinds:
        v = lam * kb.fixed + sum(kb.costs[i] - pi[i] + lam * kb.per_member for i in S)
        if kb.excess is not None:
            v += matching_factor(len(S)) * sum(kb.excess[i, j] for i, j in itertools.combinations(S, 2))
        best = min(best, v)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_excess", [True, False])
def test_pricing_algebra_matches_brute_force(seed, with_excess):
    n, cap = 8, 6
    fb = _random_family(n, 3, seed, with_excess)
    rng = np.random.default_rng(100 + seed)
    pi, lam = rng.random(n) * 2, float(rng.random())
    pf = fb.under(pi, lam, cap)
    values = {S: _direct(fb, pi, lam, S) for S in _groups(n, 2, cap)}
    for S, v in values.items():
        assert pf.value(S) == pytest.approx(v, abs=1e-12) or (math.isinf(v) and math.isinf(pf.value(S)))
    # certified minimum over sizes lo..cap, never above the true least bound
    for lo in (2, 3, 5):
        true = min(v for S, v in values.items() if len(S) >= lo)
        assert pf.least(lo) <= true + 1e-12
    # floors: every group's bound is at least the sum of its members' floors
    fl = pf.floors()
    for S, v in values.items():
        assert v >= fl[list(S)].sum() - 1e-12
    # pairs exactly; listed exactly when complete
    thr = float(np.quantile([v for v in values.values() if math.isfinite(v)], 0.3))
    assert {p for _, p in pf.pairs(thr)} == {S for S, v in values.items() if len(S) == 2 and v < thr}
    got, complete = pf.listed(thr, 3, 5, limit=10_000)
    assert complete
    assert {p for _, p in got} == {S for S, v in values.items() if 3 <= len(S) <= 5 and v < thr}
    assert [v for v, _ in got] == sorted(v for v, _ in got)


def test_listing_says_when_it_was_cut():
    fb = _random_family(10, 1, 0, with_excess=False)
    pf = fb.under(np.full(10, 5.0), 0.0, 10)  # every group prices out
    got, complete = pf.listed(0.0, 3, 4, limit=5)
    assert not complete and len(got) <= 10


def test_k_subsets_come_in_order_and_all_of_them():
    rng = np.random.default_rng(3)
    t = rng.normal(size=9)
    for k in (1, 2, 4):
        out = _k_subsets_in_order(t, k, math.inf, 10_000)
        assert len(out) == math.comb(9, k) and len(set(out)) == len(out)
        sums = [t[list(S)].sum() for S in out]
        assert all(a <= b + 1e-12 for a, b in zip(sums, sums[1:]))


def test_matching_factor():
    # every member of k lies in k - 1 pairs: weight 1/(k-1) each covers it exactly once
    assert matching_factor(4) == pytest.approx(1 / 3) and matching_factor(3) == pytest.approx(1 / 2)
    assert matching_factor(2) == 1.0 and matching_factor(1) == 0.0


def test_bad_excess_is_refused():
    with pytest.raises(ValueError, match="excess"):
        KindBound("x", 0, 0, np.zeros(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="symmetric"):
        KindBound("x", 0, 0, np.zeros(2), np.array([[0.0, -1.0], [1.0, 0.0]]))


torch = pytest.importorskip("torch")

from colorshare.formulations.setpart import enumerate_groups  # noqa: E402
from colorshare.torch import build_graph  # noqa: E402
from colorshare.torch.actions.basis import spectrum  # noqa: E402
from colorshare.torch.models import planted_stack  # noqa: E402


def _kind_of(option):
    return f"basis r={option.params['rank']}" if option.action == "basis" else "tie/medoid"


@pytest.fixture(scope="module")
def model_graphs():
    model, batches = planted_stack(families=2, layers=6, width=16, seed=2)
    out = {}
    for name, kw in {"kfac": dict(curvature="kfac", trust_region=None),
                     "layerwise-trust": dict(curvature="layerwise", trust_region=0.5),
                     "medoid": dict(curvature="layerwise", actions=("medoid", "basis", "dense"), trust_region=None)
                     }.items():
        out[name] = build_graph(model, batches, ranks=[2, 4, 6, 8, 12], progress=False, **kw)
    return out


@pytest.mark.parametrize("which", ["kfac", "layerwise-trust", "medoid"])
def test_model_bounds_never_exceed_any_option_and_pairs_tighten_them(model_graphs, which):
    g = model_graphs[which]
    for members in g.family_members.values():
        separable = g.cost_model.bounds(members)  # before any pair is evaluated: the members' own costs only
        groups = [grp for grp in enumerate_groups(g) if len(grp) > 1 and set(grp) <= set(members)]
        for grp in groups:
            g.options(grp)  # every pair (and group) priced exactly
        paired = g.cost_model.bounds(members)
        pos = {i: k for k, i in enumerate(members)}
        gain = []
        for grp in groups:
            p = [pos[i] for i in grp]
            for o in g.options(grp):
                for fb in (separable, paired):
                    kb = next(k for k in fb.kinds if k.label == _kind_of(o))
                    one = FamilyBound([kb]).under(np.zeros(len(members)), 0.0, len(grp)).value(p)
                    assert o.cost >= one - 1e-9 * max(1.0, o.cost), (grp, o, kb.label)
                    assert o.memory >= kb.fixed + len(grp) * kb.per_member
            if len(grp) > 2:
                gain.append(paired.cost_bound(p) - separable.cost_bound(p))
        assert min(gain) >= -1e-12
        assert max(gain) > 0  # the pairs add something on these planted families


@pytest.mark.parametrize("backend", ["highs", "cpsat", "pulp"])
def test_a_model_graphs_columns_written_with_bounds_are_read_back_without_torch(model_graphs, tmp_path, backend):
    """The finite column set of a solve, with the bounds, as a .json.gz instance: every backend's bound on it
    is valid for the model graph's whole space (full enumeration), and the file's coloring is priced as on the
    graph."""
    import subprocess
    import sys

    from colorshare import solve
    from colorshare.instance_file import save_instance

    g = model_graphs["kfac"]
    budget = 0.45 * g.dense_size
    full = solve(g, budget, backend="highs", columns="all")
    solve(g, budget, backend="highs", columns="generate")
    path = tmp_path / "inst.json.gz"
    save_instance(g, path, budgets=[budget])
    code = ("import sys, json; from colorshare import solve; from colorshare.instance_file import load_instance; "
            f"h = load_instance({str(path)!r}); s = solve(h, {budget!r}, backend={backend!r}, time_limit=60); "
            "print(json.dumps([s.objective, s.bound, s.status.value, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    objective, bound, status, imported_torch = __import__("json").loads(out.strip().splitlines()[-1])
    assert not imported_torch
    assert objective >= full.objective * (1 - 1e-9)
    assert bound is not None and bound <= full.objective * (1 + 1e-9)
    if status == "optimal":
        assert objective == pytest.approx(full.objective, rel=1e-6)


def test_instance_as_mps(model_graphs, tmp_path):
    from colorshare import solve
    from colorshare.cli import main
    from colorshare.instance_file import save_instance

    g = model_graphs["kfac"]
    solve(g, 0.5 * g.dense_size, backend="highs", columns="all")  # every group evaluated: the instance is whole
    save_instance(g, tmp_path / "i.json")
    assert main(["solve", str(tmp_path / "i.json"), "--budget", "50%", "--write-mps", str(tmp_path / "i.mps")]) == 0
    text = (tmp_path / "i.mps").read_text()
    assert "ROWS" in text and "COLUMNS" in text
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-9)  # the costs are tiny: HiGHS's default gaps would stop at once
    h.setOptionValue("mip_abs_gap", 0.0)
    h.readModel(str(tmp_path / "i.mps"))
    h.run()
    from colorshare.instance_file import load_instance

    ref = solve(load_instance(tmp_path / "i.json"), 0.5 * g.dense_size, backend="highs", columns="all")
    assert h.getInfo().objective_function_value == pytest.approx(ref.objective, rel=1e-6)


def test_pair_statistics_by_eigenvalues_match_the_pairs_options():
    """refine() computes a pair's bound data by the cheap path (eigenvalues only, one Cholesky factor): equal
    to what evaluating the pair's options records, on both sides of the spectrum (k d_in < d_out or not)."""
    from colorshare.torch.actions.base import tails as _tails

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(8, 24) if k % 2 == 0 else torch.nn.Linear(24, 8)
                                  for k in range(6)])
    batches = [torch.randn(64, 8) for _ in range(3)]
    kw = dict(curvature="layerwise", ranks=[2, 4, 6], trust_region=None, progress=False, mix_roles=True)
    fast = build_graph(model, batches, **kw)
    slow = build_graph(model, batches, **kw)
    for members in fast.family_members.values():
        pairs = list(itertools.combinations(members, 2))
        assert fast.refine(pairs) == len(pairs)
        assert fast.known_pairs(members) == set(pairs)
        for a, b in pairs:
            slow.options((a, b))
            menu = slow.menu(a)
            assert fast.pairs("basis")[(a, b)] == pytest.approx(_tails(spectrum(slow, (a, b)).vals, menu),
                                                             rel=1e-7, abs=1e-12)
            # the exact minimum, never above the (stabilised) tie option
            tie = slow.resolve((a, b), "tie").cost
            assert fast.pairs("tie")[(a, b)] <= tie * (1 + 1e-9) + 1e-15
            assert fast.pairs("tie")[(a, b)] == pytest.approx(tie, rel=1e-4, abs=1e-6)  # rank-deficient inputs: noise
