"""`colorshare compress` and the bad inputs it and the adapter must name: the digits MLP (fast) and SmolLM2 (slow)."""

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.cli import main  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_shared, save_shared  # noqa: E402
from colorshare.torch.models import CALIBRATION_CHUNKS  # noqa: E402


def test_compress_digits_mlp_writes_model_and_report_that_reload(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert main(["compress", "digits-mlp", "--budget", "50%", "--out", str(out), "--time-limit", "60"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["stored_parameters"] <= 0.5 * report["dense_parameters"]
    assert report["model_parameters_after"] == (report["model_parameters_before"] - report["dense_parameters"]
                                                + report["stored_parameters"])
    # load_shared on the written file reproduces the reported metric
    assert report["metric_after_reload"] == pytest.approx(report["metric_after"], rel=1e-6)
    assert report["solution"]["status"] in ("optimal", "feasible")
    assert sum(f["stored"] for f in report["families"]) == report["stored_parameters"]
    md = (out / "report.md").read_text()
    assert "| accuracy |" in md and "stored / dense" in md
    printed = capsys.readouterr().out
    assert "dense accuracy" in printed and "->" in printed


@pytest.mark.parametrize("args, message", [
    (["no-such-model"], "unknown model 'no-such-model'"),
    (["digits-mlp", "--budget", "1%", "--time-limit", "20"], "no coloring fits the budget"),
    (["digits-mlp", "--budget", "half"], "budget 'half' is none of a percentage like 50%"),
])
def test_compress_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    pytest.importorskip("sklearn")
    argv = ["compress", *args, "--out", str(tmp_path / "o")]
    if "--budget" not in args:
        argv += ["--budget", "50%"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_compress_unreadable_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file")
    assert main(["compress", str(bad), "--budget", "50%", "--out", str(tmp_path / "o")]) == 2
    assert f"cannot read {str(bad)!r}" in capsys.readouterr().err
    txt = tmp_path / "weights.txt"
    txt.write_text("hello")
    assert main(["compress", str(txt), "--budget", "50%", "--out", str(tmp_path / "o")]) == 2
    assert "GGUF" in capsys.readouterr().err


def mlp(width=16):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))


def test_nan_or_inf_weights_are_an_error_naming_the_layer():
    model = mlp()
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
        model[4].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"layer '2' has 1 NaN or infinite"):
        build_graph(model, [torch.randn(4, 8)], progress=False)


def test_load_shared_into_another_shape_names_layer_and_shapes(tmp_path):
    model = mlp(16)
    g = build_graph(model, [torch.randn(32, 8)], curvature="layerwise", actions=("basis", "dense"), ranks=[2, 4],
                    trust_region=None,
                    progress=False)
    shared = apply_coloring(model, g, solve(g, 0.5 * g.dense_size, backend="highs"))
    save_shared(shared, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"layer '\d' is 16 x 16 in .* but \(8, 8\) in this model"):
        load_shared(tmp_path / "m.safetensors", mlp(8))
    plain = mlp(16)
    save_shared(plain, tmp_path / "p.safetensors")
    shapes = r"tensor '0\.(weight|bias)' has shape \(16(, 8)?,?\) in .* but \(8(, 8)?,?\) in this model"
    with pytest.raises(ValueError, match=shapes):
        load_shared(tmp_path / "p.safetensors", mlp(8))


def test_layers_the_loss_never_reaches_are_left_out_with_a_warning():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.unused = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            self.unused(x)  # runs, but its output never reaches the loss (like a BERT pooler)
            return self.b(torch.tanh(self.a(x)))

    model = Two()
    with pytest.warns(RuntimeWarning, match="never reached by the loss.*unused"):
        g = build_graph(model, [torch.randn(16, 6)], progress=False)
    assert g.module_names == ("a", "b")


def test_sampled_fisher_loss_for_an_encoder_is_the_gauss_newton_of_its_embedding():
    """Encoder output (last_hidden_state): <e, z> with z ~ N(0, I) so that E[g g^T] = J^T J. For a linear 'encoder'
    h = W x with one token, e = normalize(W x); compare the kfac output factor with J J^T's diagonal."""
    from types import SimpleNamespace

    from colorshare.torch.stats import sampled_fisher_loss

    torch.manual_seed(0)
    lin = nn.Linear(5, 4, bias=False).double()

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.peer = lin, nn.Linear(5, 4, bias=False).double()

        def forward(self, x):
            return SimpleNamespace(last_hidden_state=self.lin(x).unsqueeze(1) + 0 * self.peer(x).unsqueeze(1))

    x = torch.randn(1, 5, dtype=torch.float64)
    h = lin(x)[0].detach()
    J = (torch.eye(4, dtype=torch.float64) - torch.outer(h, h) / h.dot(h)) / h.norm()  # d normalize(h) / d h
    expected = (J @ J.T).diagonal()
    g = build_graph(Enc(), [x.repeat(4000, 1)], targets=["lin"], curvature="kfac", progress=False, trust_region=None)
    assert torch.allclose(g.curvatures[0].out_diag.cpu(), expected, rtol=0.08, atol=1e-3 * float(expected.max()))
    out = SimpleNamespace(last_hidden_state=torch.zeros(2, 3, 4, requires_grad=True))
    assert sampled_fisher_loss(out, {"attention_mask": torch.ones(2, 3)}).ndim == 0


@pytest.mark.slow
def test_smollm2_end_to_end_per_layer_ranks_beat_uniform_svd(tmp_path):
    """The LLaMA-architecture model offline: kfac graph, exact per-layer ranks at keep 70 %, lower perplexity than
    svd-uniform at the same stored parameters; the saved file reloads to the same perplexity."""
    pytest.importorskip("gguf")
    from colorshare.torch.baselines import baseline
    from colorshare.torch.models import smollm2_135m

    try:
        case = smollm2_135m(calibration=16, evaluation=8)
    except ValueError as exc:
        pytest.skip(str(exc))
    # kfac, not the probed default: 210 probes cost ~5 min of CPU (the probes are tested on a small model)
    g = build_graph(case.model, case.batches, case.targets, curvature="kfac", progress=False)
    assert g.n == 210 and len(g.family_members) == 7
    for i in range(g.n):  # the layers' spectra outside the time limit: on a loaded machine they alone took > 72 s
        g.options((i,))
    sol = solve(g, 0.7 * g.dense_size, backend="highs", max_group_size=1, time_limit=120)
    assert sol.status == "optimal"
    shared = apply_coloring(case.model, g, sol)
    ppl = case.metrics(shared)["perplexity"]
    uni = case.metrics(apply_coloring(case.model, g, baseline(g, "svd-uniform", 0.7)))["perplexity"]
    assert ppl < uni
    save_shared(shared, tmp_path / "s.safetensors")
    import copy

    again = case.metrics(load_shared(tmp_path / "s.safetensors", copy.deepcopy(case.model)))["perplexity"]
    assert again == pytest.approx(ppl, rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (run benchmarks/gpu_scaling.py on one)")
def test_cuda_and_cpu_give_the_same_coloring():
    import copy

    for cur in ("layerwise", "kfac"):
        model = mlp(16)
        data = [torch.randn(64, 8, generator=torch.Generator().manual_seed(k)) for k in range(4)]
        sols = []
        for dev in ("cpu", "cuda"):
            m = copy.deepcopy(model).to(dev)
            g = build_graph(m, [x.to(dev) for x in data], curvature=cur, ranks=[2, 4, 8], progress=False)
            assert all(c.sigma_in.device.type == dev for c in g.curvatures)
            sols.append(solve(g, 0.5 * g.dense_size, backend="highs"))
        assert sols[0].colors == sols[1].colors
        assert [c.params for c in sols[0].classes] == [c.params for c in sols[1].classes]


def test_compress_on_the_users_own_text_states_its_token_counts(tiny_lm_folder, tmp_path, capsys):
    from pydoc_data.topics import topics

    keys = sorted(topics)
    calib, held = tmp_path / "calib.txt", tmp_path / "held.txt"
    calib.write_text("\n\n".join(topics[k] for k in keys[:6]))
    held.write_text("\n\n".join(topics[k] for k in keys[-3:]))
    out = tmp_path / "run"
    argv = ["compress", str(tiny_lm_folder), "--budget", "60%", "--out", str(out), "--curvature", "kfac",
            "--time-limit", "30", "--calibration", str(calib), "--evaluation", str(held)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    info = report["case_info"]
    assert str(calib) in info["calibration"] and str(held) in info["evaluation"]
    n_cal = int(info["calibration"].split(" = ")[1].split()[0])
    assert 256 <= n_cal <= CALIBRATION_CHUNKS * 256 and n_cal % 256 == 0
    printed = capsys.readouterr().out
    assert f"calibration: {info['calibration']}" in printed
    assert info["evaluation"] in (out / "report.md").read_text()
    # a file too short for one chunk, and a missing one, are errors naming the file
    short = tmp_path / "short.txt"
    short.write_text("too short")
    argv[argv.index("--out") + 1] = str(tmp_path / "again")  # (the first run's folder is taken)
    assert main(argv[:-4] + ["--calibration", str(short)]) == 2
    assert "fewer than one chunk" in capsys.readouterr().err
    assert main(argv[:-4] + ["--evaluation", str(tmp_path / "none.txt")]) == 2
    assert "--evaluation file" in capsys.readouterr().err


def test_calibration_text_is_spread_over_its_sources_and_disjoint_from_evaluation(tiny_lm_folder, tmp_path):
    """The built-in calibration alternates the even pydoc topics and the standard library's docstrings, each
    source's chunks spread over all of it; a user's file is read spread too. Neither touches the evaluation's
    odd topics."""
    transformers = pytest.importorskip("transformers")
    from colorshare.corpus import pydoc_text, stdlib_text
    from colorshare.torch.models import calibration_tokens, text_tokens, topic_tokens

    tok = transformers.AutoTokenizer.from_pretrained(tiny_lm_folder)
    calib = calibration_tokens(tok, 10, 64)
    assert calib.shape == (10, 64)
    for row, text in ((0, pydoc_text(0)), (1, stdlib_text())):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        windows = {tuple(ids[a:a + 64]): a for a in range(0, len(ids) - 63, 64)}
        starts = [windows[tuple(r.tolist())] for r in calib[row::2]]  # KeyError: a row not from this source
        assert starts == sorted(starts) and starts[0] == 0 and starts[-1] >= len(ids) * 3 // 4 - 64
    held = {tuple(r.tolist()) for r in topic_tokens(tok, 1, 40, 64)}
    assert not held & {tuple(r.tolist()) for r in calib}
    f = tmp_path / "mine.txt"
    f.write_text(pydoc_text(1))
    first, spread = text_tokens(tok, f, 4, 64), text_tokens(tok, f, 4, 64, spread=True)
    assert torch.equal(first[0], spread[0]) and not torch.equal(first[1:], spread[1:])
    assert torch.equal(text_tokens(tok, f, 10**6, 64, spread=True), text_tokens(tok, f, 10**6, 64))  # all of it


def test_own_text_for_a_model_that_is_not_a_causal_lm_is_an_error(tmp_path, capsys):
    pytest.importorskip("sklearn")
    f = tmp_path / "t.txt"
    f.write_text("some text")
    assert main(["compress", "digits-mlp", "--budget", "50%", "--out", str(tmp_path / "o"),
                 "--calibration", str(f)]) == 2
    assert "apply to causal LMs" in capsys.readouterr().err


@pytest.mark.slow
def test_compress_shares_within_blocks_by_default_and_across_them_when_asked(tiny_lm_folder, tmp_path):
    """Default: probes on 256 tokens, no class of two layers of one role; --cross-layer proves the larger space,
    whose optimum is no worse on the same statistics."""
    reports = {}
    for flag in ([], ["--cross-layer"]):
        out = tmp_path / ("cross" if flag else "within")
        assert main(["compress", str(tiny_lm_folder), "--budget", "40%", "--out", str(out), "--time-limit", "60",
                     "--measure-rounds", "1", "--no-verify", *flag]) == 0
        reports[bool(flag)] = json.loads((out / "report.json").read_text())
    within, cross = reports[False], reports[True]
    assert within["probe_tokens"] == 256 and within["cross_layer"] is False and cross["cross_layer"] is True
    assert "no cross-layer classes" in within["solution"]["space"]
    for r in (within, cross):
        assert r["solution"]["status"] == "optimal"
    for row in within["families"][:-1]:  # one family's classes: each a single layer
        assert all(len(c["layers"]) == 1 for c in row["classes"])
    assert cross["solution"]["objective"] <= within["solution"]["objective"] * (1 + 1e-9)
    assert "pair statistics" in cross["seconds"] and "pair statistics" not in within["seconds"]
