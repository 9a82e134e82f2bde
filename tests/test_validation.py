"""One way to validate parameters (colorshare.validation), used alike by solve, build_graph and compress; the
strategy table of solve(); compress checks what it can before it loads anything."""

import math
import re

import numpy as np
import pytest

from colorshare import SharingGraph, solve
from colorshare.instances import llama_graph
from colorshare.validation import NONE, Integer, OneOf, Real, check, check_max_group_size, check_time_limit


@pytest.mark.parametrize("value, constraints, message", [
    (0, (NONE, Real(low=0, low_open=True)), "x must be None or a number > 0, got 0"),
    (True, (Integer(low=1),), "x must be an integer >= 1, got True"),
    (2.5, (Integer(),), "x must be an integer, got 2.5"),
    (float("nan"), (Real(),), "x must be a number, got nan"),
    (math.inf, (Real(high=1),), "x must be a number <= 1, got inf"),
    ("some", (OneOf(("auto", "all")),), "x must be one of 'auto', 'all', got 'some'"),
    (1, (OneOf((True, False)),), "x must be one of True, False, got 1"),
    (1.5, (Real(low=0, high=1, low_open=True),), "x must be a number in (0, 1], got 1.5"),
])
def test_one_message_template(value, constraints, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check("x", value, *constraints)


def test_accepted_values_pass_through():
    assert check("x", None, NONE, Real()) is None
    assert check_time_limit(math.inf) is None or check_time_limit(math.inf) == math.inf
    assert check_max_group_size(None) is None and check_max_group_size(np.int64(3)) == 3
    assert check("x", np.float32(0.5), Real(low=0, high=1)) == np.float32(0.5)


@pytest.mark.parametrize("kw, needle", [
    (dict(time_limit=True), "time_limit must be None or a number of seconds > 0, got True"),
    (dict(time_limit=0), "time_limit must be None"),
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(decompose="yes"), "decompose must be one of 'auto', True, False, got 'yes'"),
    (dict(warm_start=1), "warm_start must be one of True, False, got 1"),
    (dict(columns="some"), "columns must be one of 'auto', 'all', 'generate'"),
    (dict(formulation="setpart", max_group_size=True), "max_group_size must be None or a positive integer"),
    (dict(backend="anneal", formulation="pmedian"), "applies to exact backends"),
])
def test_solve_refuses_bad_parameters_with_the_template(kw, needle):
    g = SharingGraph.from_matrix([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=re.escape(needle)):
        solve(g, 1, **{"backend": "highs", **kw})


@pytest.mark.parametrize("backend, formulation, graph_kind, strategy", [
    ("highs", "auto", "llama", "radius by family"),
    ("highs", "radius", "llama", "radius by family"),
    ("cpsat", "auto", "llama", "p-median by family"),
    ("anneal", "auto", "llama", "heuristic"),
    ("highs", "auto", "pairwise", "one program"),
    ("highs", "auto", "conflicts", "one program"),
])
def test_each_request_is_solved_by_the_strategy_that_declares_it(backend, formulation, graph_kind, strategy):
    if graph_kind == "llama":
        g = llama_graph(0)
        budget = 0.5 * g.dense_size
    elif graph_kind == "pairwise":
        g, budget = SharingGraph.from_pairwise([[0, 1, 2], [1, 0, 1], [2, 1, 0]]), 2
    else:
        g, budget = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 1], [2, 1, 0]], conflicts=[(0, 1)]), 2
    sol = solve(g, budget, backend=backend, formulation=formulation, time_limit=20)
    assert sol.facts["strategy"] == strategy
    assert sol.status in ("optimal", "feasible")


def test_formulations_live_in_one_registry_and_declare_what_backends_need():
    from colorshare.formulations.registry import auto_formulation, get_formulation

    g = llama_graph(0)
    assert auto_formulation(g, {"program", "cuts"}) == "radius" and auto_formulation(g, {"program"}) == "pmedian"
    with pytest.raises(ValueError, match="unknown formulation 'magic'; valid: auto, pmedian, radius"):
        get_formulation("magic")
    with pytest.raises(ValueError, match="runs on backend 'highs' only, not 'pulp'"):
        solve(g, 0.5 * g.dense_size, backend="pulp", formulation="radius")


@pytest.mark.parametrize("kw, needle", [
    (dict(backend="gurobi"), "unknown backend 'gurobi'"),
    (dict(time_limit=True), "--time-limit must be a number of seconds > 0, got True"),
    (dict(max_group_size=0), "--max-group-size must be None or a positive integer, got 0"),
    (dict(curvature="magic"), "--curvature must be one of 'probed'"),
    (dict(dtype="int4"), "--dtype must be one of 'auto'"),
    (dict(probe_tokens=-1), "--probe-tokens must be None or a positive integer"),
])
def test_compress_checks_its_options_before_loading_the_model(tmp_path, monkeypatch, kw, needle):
    pytest.importorskip("torch")
    import colorshare.compress as compress

    def never(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(compress, "resolve_model", never)
    with pytest.raises(ValueError, match=re.escape(needle)):
        compress.compress("digits-mlp", "50%", tmp_path / "out", **kw)
    with pytest.raises(TypeError, match="unknown option"):
        compress.compress("digits-mlp", "50%", tmp_path / "out", no_such_option=1)


def test_compress_refuses_an_output_that_is_a_file_before_loading(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import colorshare.compress as compress

    monkeypatch.setattr(compress, "resolve_model", lambda *a, **k: pytest.fail("loaded"))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        compress.compress("digits-mlp", "50%", f)


def test_the_command_line_takes_its_compress_defaults_from_the_options():
    import argparse

    from colorshare.cli import _compress_arguments
    from colorshare.compress import CompressOptions

    p = argparse.ArgumentParser()
    _compress_arguments(p)
    args = p.parse_args(["m", "--budget", "50%", "--out", "o"])
    d = CompressOptions()
    for name in ("curvature", "backend", "time_limit", "device", "seed", "dtype", "cross_layer", "probe_tokens",
                 "measure_rounds", "calibration", "evaluation"):
        assert getattr(args, name) == getattr(d, name), name
