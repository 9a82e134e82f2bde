"""The console script: solve an instance file, the demo, and import without torch."""

import json
import subprocess
import sys

import pytest

from colorshare.cli import main
from colorshare.instance_file import graph_from_dict, load_instance, save_instance


def test_solve_instance_json(tmp_path, capsys):
    inst = {"cost": [[0, 1, 5], [1, 0, 5], [5, 5, 0]], "sizes": [2, 2, 2]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(inst))
    assert main(["solve", str(path), "--budget", "4", "--backend", "highs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and out["objective"] == 1.0 and out["memory"] == 4
    assert main(["solve", str(path), "--budget", "50%", "--backend", "pulp"]) == 0
    assert main(["solve", str(path), "--budget", "1", "--backend", "highs"]) == 2  # infeasible
    assert "infeasible" in capsys.readouterr().out


def test_bad_instance_and_budget_are_clear_errors(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"cost": [[0, -1], [1, 0]]}')
    assert main(["solve", str(path), "--budget", "1"]) == 2
    assert "negative" in capsys.readouterr().err
    path.write_text('{"cost": [[0, 1], [1, 0]]}')
    assert main(["solve", str(path), "--budget", "lots"]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["solve", str(path), "--budget", "1", "--backend", "nope"]) == 2
    assert "valid backends" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly one"):
        graph_from_dict({"sizes": [1]})


def test_instance_round_trip(tmp_path):
    g = graph_from_dict({"pairwise": [[0, 1], [1, 0]], "names": ["a", "b"], "conflicts": [["a", "b"]]})
    save_instance(g, tmp_path / "x.json")
    h = load_instance(tmp_path / "x.json")
    assert h.kind == "pairwise" and h.conflicts == g.conflicts and h.names == g.names


def test_demo_prints_comparison(capsys):
    # both stop early when done (HiGHS proves it in about 1 s); the limit only matters on a loaded machine
    assert main(["demo", "--time-limit", "20", "--backends", "highs", "anneal"]) == 0
    out = capsys.readouterr().out
    assert "highs" in out and "anneal" in out and "agree: yes" in out and "% above the optimum" in out


def test_import_and_solve_do_not_import_torch():
    code = ("import sys, colorshare; from colorshare import SharingGraph, solve; "
            "solve(SharingGraph.from_matrix([[0,1],[1,0]]), 1, backend='highs'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
