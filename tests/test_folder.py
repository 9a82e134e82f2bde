"""A compressed transformers model is a folder that loads by itself (colorshare.torch.save_compressed /
load_compressed): config, generation config, tokenizer, weights in the chosen dtype, no dense model needed."""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import conftest  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.cli import main  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_compressed, save_compressed, stored_parameters  # noqa: E402
from colorshare.torch.actions import SharedLinear  # noqa: E402
from colorshare.torch.folder import source_dtype  # noqa: E402


def tiny_llama(tie=True, seed=0):
    return conftest.tiny_llama(hidden=64, intermediate=96, tie=tie, seed=seed)


@pytest.fixture(scope="module")
def shared_llama():
    model = tiny_llama()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 97, (2, 16), generator=g)} for _ in range(3)]
    graph = build_graph(model, batches, curvature="kfac", targets=[r".*_proj"], progress=False)
    sol = solve(graph, 0.5 * graph.dense_size, backend="highs")
    assert {"basis", "input"} <= {c.action for c in sol.classes}  # both kinds of built layer are in the file
    return apply_coloring(model, graph, sol), batches[0]["input_ids"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_compressed_folder_loads_alone_and_runs_as_the_model_in_memory(shared_llama, tmp_path, dtype):
    shared, x = shared_llama
    save_compressed(shared, tmp_path, dtype=dtype)
    assert {"config.json", "generation_config.json", "model.safetensors"} <= {f.name for f in tmp_path.iterdir()}
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert shared.config.architectures != ["x"]  # the caller's config is untouched (a copy was written)
    back = load_compressed(tmp_path)
    assert stored_parameters(back) == stored_parameters(shared)
    assert back.lm_head.weight is back.model.embed_tokens.weight  # tied embeddings stay one tensor
    kinds = {type(m).__name__ for m in back.modules() if isinstance(m, SharedLinear)}
    assert kinds == {"BasisLinear", "InputFactorLinear"}
    for name, p in back.named_parameters():
        assert p.device.type == "cpu" and p.dtype == getattr(torch, dtype), name
    # the file stores each unique parameter once, in the dtype asked for
    size = (tmp_path / "model.safetensors").stat().st_size
    per = torch.finfo(getattr(torch, dtype)).bits // 8
    assert stored_parameters(shared) * per <= size <= stored_parameters(shared) * per + 64 * 1024
    with torch.no_grad():
        want, got = shared(input_ids=x).logits, back(input_ids=x).logits.float()
    tol = 1e-5 if dtype == "float32" else 0.05 * float(want.abs().max())
    assert float((want - got).abs().max()) <= tol
    out = back.generate(x[:1, :4], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)
    # another dtype on loading
    assert next(load_compressed(tmp_path, dtype="float32").parameters()).dtype == torch.float32


def test_bad_folders_are_named(tmp_path, shared_llama):
    with pytest.raises(ValueError, match="no config.json"):
        load_compressed(tmp_path)
    transformers.LlamaConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no model.safetensors"):
        load_compressed(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_compressed(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype"):
        save_compressed(shared_llama[0], tmp_path / "x", dtype="int3")
    with pytest.raises(TypeError, match="transformers model"):
        save_compressed(torch.nn.Linear(2, 2), tmp_path / "y")


def test_source_dtype_reads_the_config(tmp_path):
    assert source_dtype(tmp_path) == "float32"  # says nothing
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert source_dtype(tmp_path) == "bfloat16"
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float16"}))
    assert source_dtype(tmp_path) == "float16"


def test_compress_writes_a_folder_that_loads_by_itself(tiny_lm_folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["compress", str(tiny_lm_folder), "--budget", "60%", "--out", str(out), "--curvature", "kfac",
            "--time-limit", "30", "--dtype", "bfloat16"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "report.json", "report.md"} <= names
    assert report["dtype"] == "bfloat16" and report["folder"] is True
    # the reload measured the folder alone, in bfloat16: close to the float32 model in memory
    after, again = report["metric_after"]["perplexity"], report["metric_after_reload"]["perplexity"]
    assert abs(again - after) / after < 0.05
    model = load_compressed(out)
    tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert stored_parameters(model) == report["model_parameters_after"]
    ids = tok("The quick brown fox", return_tensors="pt")["input_ids"]
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4
    assert "load_compressed" in (out / "report.md").read_text()
