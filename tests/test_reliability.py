"""compress refuses what it cannot do before it writes anything, writes its folder whole or not at all, and
names the cause of an error, not a consequence of it."""

import json

import pytest

from colorshare.staging import check_target, publish, staging_folder

torch = pytest.importorskip("torch")


def test_the_output_folder_is_checked_before_anything_is_loaded(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="is the source folder or inside it"):
        check_target(src, src, overwrite=True)
    with pytest.raises(ValueError, match="is the source folder or inside it"):
        check_target(src / "out", src, overwrite=False)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="exists and is not empty: give --overwrite"):
        check_target(taken, src, overwrite=False)
    check_target(taken, src, overwrite=True)
    check_target(tmp_path / "new" / "deeper", src, overwrite=False)


def test_a_folder_is_replaced_whole_and_a_failed_build_leaves_the_old_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    stage = staging_folder(out)
    (stage / "new.txt").write_text("new")
    publish(stage, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and not stage.exists()
    stage = staging_folder(out)
    (stage / "half.txt").write_text("half")  # a run that dies here: its stage is not the folder
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_compress_stops_with_the_cause_and_writes_nothing(tiny_lm_folder, tmp_path, capsys):
    from colorshare.cli import main

    out = tmp_path / "o"
    assert main(["compress", str(tiny_lm_folder), "--budget", "50%", "--out", str(out), "--time-limit", "0.0001",
                 "--measure-rounds", "1"]) == 2
    assert "no coloring within --time-limit" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".o.colorshare-*"))
    assert main(["compress", str(tiny_lm_folder), "--budget", "50%", "--out", str(out), "--backend",
                 "gurobi"]) == 2
    assert "unknown backend 'gurobi'" in capsys.readouterr().err


@pytest.mark.slow
def test_compress_with_no_budget_keeps_every_layer_and_reports_it(tiny_lm_folder, tmp_path):
    from colorshare.cli import main

    out = tmp_path / "all"
    assert main(["compress", str(tiny_lm_folder), "--budget", "inf", "--out", str(out), "--time-limit", "30",
                 "--measure-rounds", "1", "--no-verify"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["budget_memory"] is None and report["budget_fraction"] is None
    assert report["stored_memory"] == report["dense_memory"]


def test_a_nan_before_the_targeted_layers_is_named_as_such():
    from conftest import tiny_llama

    from colorshare.torch import build_graph

    model = tiny_llama()
    with torch.no_grad():
        model.model.embed_tokens.weight[3, 0] = float("nan")
    batches = [{"input_ids": torch.tensor([[3, 4, 5, 6]] * 2)}]
    with pytest.raises(ValueError, match="received NaN or infinite inputs in the calibration pass"):
        build_graph(model, batches, targets="all-linear", curvature="kfac", progress=False)
