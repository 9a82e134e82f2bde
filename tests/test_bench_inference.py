"""The inference benchmark's measurements (benchmarks.speed) on a tiny LLaMA."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from benchmarks.speed import decode_speed, markdown_table, prefill_speed, speed_rows  # noqa: E402
from colorshare import solve  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, save_compressed  # noqa: E402


def _tiny():
    return tiny_llama(hidden=64, intermediate=128, positions=128, tie=False)


def test_speeds_are_positive_and_the_table_gives_ratios_to_the_reference():
    model = _tiny()
    assert prefill_speed(model, 97, 2, 16, repeats=1) > 0
    assert decode_speed(model, 97, 2, 4, prompt=8, repeats=1) > 0
    rows = [{"model": "dense", "prefill 1x8 tok/s": 100.0, "weights_bytes": 2**20},
            {"model": "small", "prefill 1x8 tok/s": 150.0, "weights_bytes": 2**19}]
    table = markdown_table(rows, "dense")
    assert "150.0 (1.50x)" in table and "0.5 MiB (0.50x)" in table


@pytest.mark.slow
def test_a_speed_row_of_a_compressed_folder_measures_its_files_and_memory(tmp_path):
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 97, (2, 16), generator=g)} for _ in range(2)]
    graph = build_graph(model, batches, curvature="kfac", targets="all-linear", progress=False)
    shared = apply_coloring(model, graph, solve(graph, 0.5 * graph.dense_size, backend="highs"))
    save_compressed(shared, tmp_path)
    dense_dir = tmp_path / "dense"
    save_compressed(model, dense_dir)
    rows = speed_rows({"dense": model, "keep 50%": shared}, 97, {"dense": dense_dir, "keep 50%": tmp_path},
                      {"dense": False, "keep 50%": True}, prefill=((1, 16),), decode=((1, 4),), repeats=1)
    row = rows[1]
    assert rows[0]["stored_parameters"] > row["stored_parameters"]
    assert rows[0]["weights_bytes"] > row["weights_bytes"]
    assert row["weights_bytes"] == (tmp_path / "model.safetensors").stat().st_size
    assert row["run_raise_bytes"] >= row["load_raise_bytes"] >= 0
    assert row["prefill 1x16 tok/s"] > 0 and row["decode batch 1 tok/s"] > 0
