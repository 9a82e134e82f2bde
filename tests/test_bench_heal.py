"""The healing benchmark's result files: a study run in parts merges into one table."""

import pytest

from benchmarks.heal import merged


def _res(rows, dense=41.0, seconds=400.0, evaluation="packages"):
    return {"model": "m", "metric": "perplexity", "lr": 1e-4, "autocast": "bfloat16", "dense": dense,
            "info": {"evaluation": evaluation}, "graph_seconds": seconds, "rows": rows}


def _row(keep, steps, value):
    return {"keep": keep, "steps": steps, "perplexity": value, "seconds": 1.0}


def test_appending_adds_budgets_in_decreasing_order_and_replaces_a_row_measured_again():
    old = _res([_row(0.65, 0, 113.0), _row(0.65, 240, 67.0), _row(0.3, 0, 1700.0), _row(0.3, 240, 146.0)])
    new = _res([_row(0.7, 0, 90.0), _row(0.7, 240, 60.0), _row(0.3, 240, 140.0)], seconds=450.0)
    out = merged(old, new)
    assert [(r["keep"], r["steps"]) for r in out["rows"]] == [(0.7, 0), (0.7, 240), (0.65, 0), (0.65, 240),
                                                               (0.3, 0), (0.3, 240)]
    assert next(r["perplexity"] for r in out["rows"] if (r["keep"], r["steps"]) == (0.3, 240)) == 140.0
    assert out["graph_seconds"] == [400.0, 450.0]
    assert merged(out, _res([], seconds=5.0))["graph_seconds"] == [400.0, 450.0, 5.0]


@pytest.mark.parametrize("change", [{"dense": 42.0}, {"evaluation": "other"}])
def test_appending_a_run_that_measures_something_else_is_refused(change):
    with pytest.raises(ValueError, match="cannot append"):
        merged(_res([_row(0.5, 0, 1.0)]), _res([_row(0.4, 0, 2.0)], **change))
