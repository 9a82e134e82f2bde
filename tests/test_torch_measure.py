"""Measured costs for the classes an optimum shares (colorshare.torch.measure)."""

import math

import pytest

torch = pytest.importorskip("torch")

from colorshare import evaluate  # noqa: E402
from colorshare.torch import apply_coloring, build_graph  # noqa: E402
from colorshare.torch.batches import forward  # noqa: E402
from colorshare.torch.measure import measure_classes, solve_measured  # noqa: E402
from colorshare.torch.models import planted_stack  # noqa: E402
from colorshare.torch.probe import _reference, output_divergence  # noqa: E402


@pytest.fixture(scope="module")
def case():
    model, batches = planted_stack(families=2, layers=6, width=16, seed=3)
    g = build_graph(model, batches, ranks=[2, 4, 6, 8, 12], progress=False)  # probed, classes of at most 2
    return model, batches, g


def test_a_class_measured_alone_is_what_apply_coloring_makes_the_model_do(case):
    model, batches, g0 = case
    g = g0.with_trust_region(None)  # every action of the pair exists
    members = g.family_members[next(iter(g.family_members))][:2]
    for action, memory in (("tie", int(g.sizes[members[0]])), ("basis", None)):
        opt = g.resolve(members, action, memory)
        classes = [(members, action, opt.memory)] + [((i,), "dense") for i in range(g.n) if i not in members]
        sol = evaluate(g, classes)
        cl = next(c for c in sol.classes if len(c.members) == 2)
        measured = measure_classes(g, model, batches[:2], [cl])[0]
        shared = apply_coloring(model, g, sol)
        with torch.no_grad():
            refs = [_reference(forward(model, b), b, None) for b in batches[:2]]
            direct = sum(output_divergence(forward(shared, b), b, r) for b, r in zip(batches[:2], refs)) / 2
        # float32 forwards: a factorized layer (x C^T) U^T and its product U C round apart by ~1e-4 of a KL of 2e-5
        assert measured == pytest.approx(direct, rel=1e-3, abs=1e-9)
        assert measured > 0


def test_the_loop_prices_every_shared_class_of_its_answer_by_measurement(case):
    model, batches, g0 = case
    g = g0.with_trust_region(g0.trust_region)  # its own measured prices: the fixture's graph stays as built
    sol = solve_measured(g, model, batches[:2], 0.45 * g.dense_size, backend="highs", time_limit=60)
    facts = sol.facts["measured"]
    assert facts["rounds"] >= 1 and facts["seconds"] >= 0
    shared = [c for c in sol.classes if len(c.members) > 1]
    if "round limit" not in facts["stopped"]:
        for c in shared:
            assert g.measured[(c.members, c.action, c.memory)] == pytest.approx(c.cost)
    assert sol.objective == pytest.approx(math.fsum(c.cost for c in sol.classes))
    for row in facts["classes"]:
        assert row["measured"] >= 0 and row["predicted"] >= 0
    assert not g0.measured  # the other graph's prices are untouched


def test_measured_costs_need_a_probed_graph(case):
    model, batches, _ = case
    g = build_graph(model, batches, curvature="kfac", ranks=[4, 8], progress=False)
    with pytest.raises(ValueError, match="probed"):
        solve_measured(g, model, batches[:2], 0.5 * g.dense_size)
