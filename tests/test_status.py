"""Status honesty: time limits, gaps, and answers that break the model."""

import numpy as np
import pytest

from colorshare import SharingGraph, SolverError, Status, solve
from colorshare.solvers.backend import Backend, RawResult
from colorshare.solvers.solution import compute_gap


def test_gap_edge_cases():
    assert compute_gap(None, 1.0) is None and compute_gap(1.0, None) is None
    assert compute_gap(0.0, 0.0) == 0.0
    assert compute_gap(10.0, 9.0) == pytest.approx(0.1)
    assert compute_gap(1.0, 1.0 + 1e-12) == 0.0  # float noise is not a broken proof
    with pytest.raises(SolverError, match="exceeds"):
        compute_gap(1.0, 2.0)


def test_status_compares_to_strings():
    assert Status.OPTIMAL == "optimal" and str(Status.INFEASIBLE) == "infeasible"


def _hard_graph():
    rng = np.random.default_rng(0)
    n = 60
    pts = rng.random((n, 2))
    c = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    return SharingGraph.from_matrix(c)


@pytest.mark.parametrize("backend", ["cpsat", "highs", "pulp", "anneal"])
def test_tight_time_limit_is_never_called_optimal_without_proof(backend):
    g = _hard_graph()
    sol = solve(g, 7, backend=backend, time_limit=0.05, decompose=False)
    assert sol.status in ("optimal", "feasible", "unknown")
    if sol.status == "optimal":
        assert sol.gap is not None and sol.gap <= 1e-6
    if sol.status == "feasible" and backend != "anneal":
        # a feasible answer after a limit carries the solver's bound where it has one, and an honest gap
        assert sol.bound is None or sol.bound <= sol.objective + 1e-9
        assert sol.gap is None or sol.gap >= 0
    if sol.colors is not None:
        assert sol.memory <= 7


def test_decomposition_under_time_limit_keeps_valid_bound():
    from colorshare.instances import llama_graph

    g = llama_graph()
    sol = solve(g, 0.5 * g.dense_size, backend="pulp", time_limit=0.5, decompose=True)
    assert sol.status in ("feasible", "optimal")
    assert sol.bound is None or sol.bound <= sol.objective + 1e-9
    assert sol.memory <= 0.5 * g.dense_size


class _Liar(Backend):
    """A backend that ignores the budget: puts every layer in its own class."""

    name = "liar"
    exact = True
    decompose_by_default = False

    @classmethod
    def unavailable_reason(cls):
        return None

    def solve_program(self, program, time_limit, seed, hint, **options):
        from colorshare.formulations.pmedian import PMedian

        g = SharingGraph.from_matrix(np.zeros((3, 3)))
        form = PMedian(g, float("inf"))
        x = np.zeros(program.num_vars)
        for j in range(3):
            x[form.y[j]] = 1
        return RawResult(Status.OPTIMAL, x, 0.0, {})


def test_answer_breaking_the_budget_is_an_error(monkeypatch):
    import colorshare.solvers.request as request

    monkeypatch.setattr(request, "get_backend", lambda name: _Liar)
    g = SharingGraph.from_matrix(np.ones((3, 3)) - np.eye(3))
    with pytest.raises(SolverError, match="over the budget"):
        solve(g, 1, backend="liar")


def test_solution_to_dict_is_json_ready():
    import json

    g = SharingGraph.from_matrix([[0, 1], [1, 0]], sizes=[3, 3])
    d = solve(g, 3, backend="highs").to_dict()
    assert json.loads(json.dumps(d))["status"] == "optimal" and d["colors"] == [0, 0] and d["memory"] == 3
