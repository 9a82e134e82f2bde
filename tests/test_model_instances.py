"""The committed real-model instances (colorshare/bench/instances): read without torch, every exact backend on
them, and the cross-check that no backend's proven bound exceeds a coloring any backend found."""

import pytest
from conftest import EXACT_BACKENDS

from colorshare import solve
from colorshare.bench.config import INSTANCE_DIR, MODEL_INSTANCES
from colorshare.bench.solvers import check_agreement, model_instances


def _rows(inst, limit):
    rows = []
    for b in EXACT_BACKENDS:
        s = solve(inst.graph, inst.budget, backend=b, time_limit=limit)
        rows.append({"instance": inst.name, "n_layers": inst.graph.n, "backend": b, "time_limit": limit,
                     "objective": s.objective, "bound": s.bound, "gap": s.gap, "status": s.status.value,
                     "wall_time": s.wall_time})
        assert s.colors is not None and s.bound is not None, (inst.name, b, s)
        assert s.wall_time <= 1.05 * limit + 1.0
    return rows


def _instances(names):
    missing = [n for n in names if not (INSTANCE_DIR / f"{n}.json.gz").is_file()]
    if missing:
        pytest.skip(f"instances not committed: {missing}")
    return model_instances(names)


def test_smollm2_kfac_at_half_every_backend_agrees_and_bounds_it():
    inst = next(i for i in _instances(["smollm2-135m-kfac"]) if i.name.endswith("@50%"))
    rows = _rows(inst, 60)
    check_agreement(rows)
    highs = next(r for r in rows if r["backend"] == "highs")
    assert highs["status"] == "optimal"
    for r in rows:  # every exact backend states a bound and a gap of its own, within 5 %
        assert r["gap"] is not None and r["gap"] <= 0.05


@pytest.mark.slow
def test_every_committed_instance_every_backend_agrees():
    rows = []
    for inst in _instances(list(MODEL_INSTANCES)):
        rows += _rows(inst, 60)
    check_agreement(rows)
