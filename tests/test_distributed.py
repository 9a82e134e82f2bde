"""Data-parallel statistics (colorshare.torch.distributed): two gloo processes on the CPU give the one-process
statistics, probes and plan."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from colorshare.torch import build_graph  # noqa: E402
from colorshare.torch import distributed as dist  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _case():
    model = tiny_llama(vocab=61, tie=False)
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 61, (2, 12), generator=g)} for _ in range(5)]  # 5: uneven shards
    return model, batches


def _summary(graph):
    return {"sigma": [c.sigma_in.clone() for c in graph.curvatures],
            "out": [c.out_diag.clone() for c in graph.curvatures],
            "scale": [float(c.scale) for c in graph.curvatures],
            "probes": None if graph.probe_ratios is None else list(map(float, graph.probe_ratios)),
            "scopes": sorted(tuple(s) for s in graph.scopes)}  # layers fed the same tensor: the same on each rank


def _worker(rank, size, init, out, curvature):
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        model, batches = _case()
        graph = build_graph(model, batches, curvature=curvature, targets="all-linear", progress=False)
        if rank == 0:
            torch.save(_summary(graph), out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("curvature", ["kfac", pytest.param("probed", marks=pytest.mark.slow)])
def test_two_gloo_processes_give_the_one_process_statistics(tmp_path, curvature):
    model, batches = _case()
    one = _summary(build_graph(model, batches, curvature=curvature, targets="all-linear", progress=False))
    out = tmp_path / "rank0.pt"
    torch.multiprocessing.start_processes(_worker, args=(2, f"file://{tmp_path / 'init'}", str(out), curvature),
                                          nprocs=2, join=True, start_method="spawn")
    two = torch.load(out)
    assert len(two["sigma"]) == len(one["sigma"])
    for a, b in zip(one["sigma"] + one["out"], two["sigma"] + two["out"]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert two["scale"] == pytest.approx(one["scale"], rel=1e-9)
    assert two["scopes"] == one["scopes"] and one["scopes"]
    if curvature == "probed":  # each rank probed half the layers: gathered, the one-process ratios
        assert two["probes"] == pytest.approx(one["probes"], rel=1e-6)


def test_outside_a_process_group_everything_is_one_process():
    assert dist.world() == (0, 1) and dist.is_main()
    assert dist.shard([1, 2, 3]) == [1, 2, 3]
    t = torch.ones(3)
    assert dist.all_reduce_sum(t) is t and dist.all_gather("x") == ["x"]
    assert dist.init_from_env() == (0, 1)  # no WORLD_SIZE: nothing is opened


@pytest.mark.slow
def test_a_curvature_that_is_not_data_parallel_is_refused(tmp_path):
    torch.multiprocessing.start_processes(_refused, args=(2, f"file://{tmp_path / 'init'}", str(tmp_path)),
                                          nprocs=2, join=True, start_method="spawn")
    assert "does not run data-parallel" in (tmp_path / "0.txt").read_text()


def _refused(rank, size, init, folder):
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        model, batches = _case()
        try:
            build_graph(model, batches, curvature="fisher", targets="all-linear", progress=False)
            msg = "no error"
        except ValueError as exc:
            msg = str(exc)
        Path(folder, f"{rank}.txt").write_text(msg)
    finally:
        torch.distributed.destroy_process_group()


def _one_and_two_processes(args, env, tmp_path, port):
    """The reports of ``colorshare compress ARGS`` in one process and under ``torchrun --nproc_per_node 2``."""
    reports = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        launch = [sys.executable, "-m", "colorshare"] if n == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
             "-m", "colorshare"]
        run = subprocess.run(launch + ["compress"] + args + ["--out", str(out)], env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-2000:]
        reports.append(json.loads((out / "report.json").read_text()))
    return reports


@pytest.mark.slow
def test_torchrun_compress_writes_the_one_process_plan(tiny_lm_folder, tmp_path):
    """``torchrun --nproc_per_node 2 -m colorshare compress`` (gloo) writes the plan one process writes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    # torchrun runs each process on one thread (OMP_NUM_THREADS=1); the one process does too, so that the only
    # difference is the split of the batches. Float32 matmuls on another thread count move this tiny model's probe
    # KLs (about 1e-5 nats, differences of log-softmaxes) by a few percent, enough to flip its near-ties
    env["OMP_NUM_THREADS"] = "1"
    args = [str(tiny_lm_folder), "--budget", "50%", "--time-limit", "60", "--no-verify"]
    one, two = _one_and_two_processes(args, env, tmp_path, port=29517)
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["solution"]["colors"] == one["solution"]["colors"]
    assert two["families"] == one["families"]  # the same classes, actions and ranks
    assert two["stored_parameters"] == one["stored_parameters"]
    assert two["solution"]["objective"] == pytest.approx(one["solution"]["objective"], rel=1e-9)


@pytest.mark.slow
def test_torchrun_compress_heals_data_parallel_to_the_one_process_model(tiny_lm_folder, tmp_path):
    """``torchrun --nproc_per_node 2 -m colorshare compress --heal``: both processes heal rank 0's plan, each on
    its share of every batch, and the folder holds the model one process heals (its metric and held-back loss)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    args = [str(tiny_lm_folder), "--budget", "50%", "--time-limit", "60", "--no-verify", "--heal", "6",
            "--heal-lr", "1e-4", "--heal-tokens", "6144", "--curvature", "kfac"]
    one, two = _one_and_two_processes(args, env, tmp_path, port=29518)
    assert two["solution"]["colors"] == one["solution"]["colors"]
    h1, h2 = one["heal"], two["heal"]
    assert h1["steps"] == h2["steps"] == 6 and h1["held_back_best"] < h1["held_back_before"]
    assert h2["held_back_before"] == pytest.approx(h1["held_back_before"], rel=1e-4)
    gain = h1["held_back_before"] - h1["held_back_best"]  # both runs heal by the same amount, to within 5 % of it
    assert abs(h2["held_back_best"] - h1["held_back_best"]) < 0.05 * gain
    for k, v in one["metric_after"].items():
        assert two["metric_after"][k] == pytest.approx(v, rel=1e-3), k
