"""Nothing of a model folder runs, nothing is lost, nothing loads silently wrong: a folder with an ``auto_map`` is
refused before transformers reads it (whatever standard input says), a source with missing weights or written
by colorshare is refused, every field and tensor of a compressed folder's plan is checked against the model
(one-line ValueError naming the file), and a save killed midway leaves the old folder or none."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import conftest  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

from colorshare.torch import BasisLinear, QuantLinear, load_compressed, load_shared, save_compressed  # noqa: E402
from colorshare.torch import folder as folder_module  # noqa: E402
from colorshare.torch.models import load_causal_lm  # noqa: E402
from colorshare.torch.quant import exact_products, rtn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _plant_code(folder: Path, marker: Path, file: str = "config.json") -> None:
    """Make ``folder`` ask for its own code: ``file`` maps classes to ``evil.py``, which leaves ``marker``."""
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    data = json.loads((folder / file).read_text()) if (folder / file).is_file() else {}
    data["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel",
                        "AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / file).write_text(json.dumps(data))


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# ---- 1. no code of the folder runs ------------------------------------------------------------------------------

def test_compress_refuses_an_auto_map_folder_whatever_stdin_says(tiny_lm_folder, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_lm_folder, src)
    marker = tmp_path / "marker"
    _plant_code(src, marker)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "colorshare", "compress", str(src), "--budget", "50%", "--out",
                          str(out), "--time-limit", "20", "--no-verify"], input="y\n", capture_output=True,
                         text=True, env=_env(), timeout=300, cwd=tmp_path)
    assert run.returncode != 0
    assert "auto_map" in run.stderr and "config.json" in run.stderr and "evil.EvilModel" in run.stderr
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("file", ["config.json", "tokenizer_config.json"])
def test_load_causal_lm_refuses_an_auto_map_before_transformers_reads(tiny_lm_folder, tmp_path, monkeypatch, file):
    src = tmp_path / "src"
    shutil.copytree(tiny_lm_folder, src)
    marker = tmp_path / "marker"
    _plant_code(src, marker, file)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))
    with pytest.raises(ValueError, match="auto_map") as exc:
        load_causal_lm(str(src))
    assert file in _one_line(exc, src) and not marker.exists()


def test_load_compressed_refuses_an_auto_map(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save_compressed(conftest.tiny_llama(), out)
    marker = tmp_path / "marker"
    _plant_code(out, marker)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))
    with pytest.raises(ValueError, match="auto_map.*never runs") as exc:
        load_compressed(out)
    _one_line(exc, out)
    assert not marker.exists()


# ---- 2. a source with missing weights, or a colorshare folder as a source ---------------------------------------

def test_a_source_with_a_deleted_weight_is_refused_naming_it(tiny_lm_folder, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_lm_folder, src)
    tensors = load_file(src / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 weight\(s\) missing .*random values.*model\.layers\.1\.mlp\.down_proj"):
        load_causal_lm(str(src))


def test_a_colorshare_folder_as_a_source_is_refused_with_the_hint(tmp_path):
    out = tmp_path / "out"
    save_compressed(conftest.tiny_llama(), out)
    with pytest.raises(ValueError, match="is a colorshare folder .*load_compressed") as exc:
        load_causal_lm(str(out))
    _one_line(exc, out)


# ---- 3. a plan's fields and tensors are checked -------------------------------------------------------------------

def _built() -> nn.Module:
    """The tiny LLaMA (tied embeddings) with q_proj of both blocks sharing a basis, and an up_proj in 4 bits and a
    down_proj in 8 bits: every kind of plan entry (aliases, basis, dense quantized)."""
    model = conftest.tiny_llama()
    layers = model.model.layers
    with torch.no_grad():
        U = nn.Parameter(torch.linalg.qr(torch.randn(32, 8, generator=torch.Generator().manual_seed(2)))[0])
        for block in layers:
            q = block.self_attn.q_proj
            block.self_attn.q_proj = BasisLinear(U, nn.Parameter(U.detach().T @ q.weight), None)
        layers[0].mlp.up_proj = QuantLinear.from_quantized(rtn(layers[0].mlp.up_proj.weight, 4), None)
        layers[1].mlp.down_proj = QuantLinear.from_quantized(rtn(layers[1].mlp.down_proj.weight, 8), None)
    return model.eval()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, nn.Module]:
    out = tmp_path_factory.mktemp("good") / "folder"
    model = _built()
    save_compressed(model, out)
    return out, model


def _tamper(src: Path, dst: Path, plan: Callable[[dict], None] | None = None, raw: str | None = None,
            tensors: Callable[[dict], None] | None = None) -> Path:
    """A copy of the folder ``src`` at ``dst`` with its plan (``plan(p)`` edits it; ``raw``: the metadata text
    itself) or its tensors (``tensors(t)`` edits them) changed."""
    shutil.copytree(src, dst)
    f = dst / "model.safetensors"
    with safe_open(str(f), framework="pt") as fh:
        meta = dict(fh.metadata())
    t = load_file(f)
    if plan is not None:
        p = json.loads(meta["colorshare"])
        plan(p)
        meta["colorshare"] = json.dumps(p)
    if raw is not None:
        meta["colorshare"] = raw
    if tensors is not None:
        tensors(t)
    save_file(t, f, metadata=meta)
    return f


Q0 = "model.layers.0.self_attn.q_proj"
UP = "model.layers.0.mlp.up_proj"
DOWN = "model.layers.1.mlp.down_proj"


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict], None]:
    def edit(p: dict) -> None:
        d = p
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _drop(path: tuple[str, ...]) -> Callable[[dict], None]:
    def edit(p: dict) -> None:
        d = p
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


def _nan(name: str, value: float) -> Callable[[dict], None]:
    def edit(t: dict) -> None:
        t[name] = t[name].clone()
        t[name].view(-1)[3] = value
    return edit


def _cast(name: str, dtype: Any) -> Callable[[dict], None]:
    def edit(t: dict) -> None:
        t[name] = t[name].to(dtype)
    return edit


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "alias to another shape": ({"plan": _set(("aliases", "lm_head.weight"), "model.norm.weight")},
                               r"'model\.norm\.weight' \(which 'lm_head\.weight' reads\) has shape \(32,\)"),
    "alias to no tensor": ({"plan": _set(("aliases", "lm_head.weight"), "nowhere")}, "not a tensor of the file"),
    "alias of an alias": ({"plan": _set(("aliases", "x"), "lm_head.weight")}, "an alias"),
    "float parameter as int": ({"tensors": _cast("model.norm.weight", torch.int32)}, "needs a floating tensor"),
    "scales in float32": ({"tensors": _cast(f"{UP}.scales", torch.float32)}, "stores it as torch.float16"),
    "codes in int32": ({"tensors": _cast(f"{DOWN}.codes", torch.int32)}, "stores it as torch.int8"),
    "NaN weight": ({"tensors": _nan("model.layers.0.mlp.gate_proj.weight", float("nan"))}, "holds NaN"),
    "inf basis": ({"tensors": _nan(f"{Q0}.basis", float("inf"))}, "holds inf"),
    "inf scale": ({"tensors": _nan(f"{UP}.scales", float("inf"))}, "holds inf"),
    "negative rank": ({"plan": _set(("basis", Q0, "rank"), -3)}, "'rank' must be a positive integer, got -3"),
    "string rank": ({"plan": _set(("basis", Q0, "rank"), "8")}, "'rank' must be a positive integer, got '8'"),
    "null rank": ({"plan": _set(("basis", Q0, "rank"), None)}, "'rank' must be a positive integer, got None"),
    "huge rank": ({"plan": _set(("basis", Q0, "rank"), 10 ** 30)}, "'rank' must be at most"),
    "wrong rank": ({"plan": _set(("basis", Q0, "rank"), 4)}, r"has shape \(32, 8\) in .* but \(32, 4\)"),
    "bits 5": ({"plan": _set(("dense", UP, "bits"), 5)}, "'bits' must be one of 8, 4, 3, 2, got 5"),
    "bits 4.0": ({"plan": _set(("dense", UP, "bits"), 4.0)}, "'bits' must be one of 8, 4, 3, 2, got 4.0"),
    "group not dividing": ({"plan": _set(("dense", UP, "group"), 5)}, "'group' must divide 'in'"),
    "missing field": ({"plan": _drop(("dense", UP, "in"))}, "lacks field"),
    "unknown field": ({"plan": _set(("dense", UP, "colour"), 1)}, "unknown field"),
    "entry not an object": ({"plan": _set(("basis", Q0), 8)}, "must be a JSON object"),
    "unknown key": ({"plan": _set(("sparsify",), {})}, "unknown key"),
    "two entries": ({"plan": _set(("input", Q0), {"in": 32, "out": 32, "rank": 8})}, "two entries"),
    "nested entry": ({"plan": _set(("dense", UP + ".coeff"), {"in": 32, "out": 64, "bits": 8})}, "inside another"),
    "plan not JSON": ({"raw": "{not json"}, "not JSON"),
    "null plan": ({"raw": "null"}, "must be a JSON object, got None"),
    "plan a list": ({"raw": "[1, 2]"}, "must be a JSON object"),
    "newer format": ({"plan": _set(("format",), "colorshare-shared-v9")}, "'colorshare-shared-v9'.*newer colorshare"),
    "no format": ({"plan": _drop(("format",))}, "format must be 'colorshare-shared-v1', got None"),
    "extra tensor": ({"tensors": lambda t: t.update(extra=torch.zeros(2))}, "'extra' of .* is not in"),
    "missing buffer": ({"tensors": _drop((f"{UP}.zeros",))}, "buffer '.*zeros' of .* is not in"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_plan_or_tensor_is_one_line_naming_the_file(good, tmp_path, case):
    kw, match = CASES[case]
    f = _tamper(good[0], tmp_path / "bad", **kw)
    with pytest.raises(ValueError, match=match) as exc:
        load_compressed(f.parent)
    _one_line(exc, f)
    with pytest.raises(ValueError, match=match) as exc:  # load_shared into a fresh model: the same checks
        load_shared(f, conftest.tiny_llama(seed=3))
    _one_line(exc, f)


def test_the_untampered_folder_loads_and_matches(good):
    out, model = good
    x = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), exact_products():
        want = model(input_ids=x).logits
        assert torch.allclose(load_compressed(out)(input_ids=x).logits, want, atol=1e-5)
        assert torch.allclose(load_shared(out / "model.safetensors", conftest.tiny_llama(seed=3))(input_ids=x).logits,
                              want, atol=1e-5)


def test_a_config_that_does_not_fit_the_weights_is_named(good, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(good[0], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vocab_size"] = 100
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"embed_tokens\.weight' has shape \(97, 32\) .* \(100, 32\) in "
                                         r"LlamaForCausalLM as .*config\.json describes it") as exc:
        load_compressed(bad)
    _one_line(exc, bad)


def test_load_shared_checks_before_it_changes_the_model(good, tmp_path):
    f = _tamper(good[0], tmp_path / "bad", tensors=_nan(f"{Q0}.coeff", float("nan")))
    fresh = conftest.tiny_llama(seed=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="holds NaN"):
        load_shared(f, fresh)
    assert isinstance(fresh.model.layers[0].self_attn.q_proj, nn.Linear)  # not rebuilt
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


# ---- 4. a folder is whole or absent -------------------------------------------------------------------------------

def _logits(folder: Path) -> Any:
    x = torch.arange(10)[None]
    with torch.no_grad():
        return load_compressed(folder)(input_ids=x).logits


@pytest.mark.parametrize("old", [True, False])
def test_a_save_failing_midway_leaves_the_old_folder_or_none(tmp_path, monkeypatch, old):
    out = tmp_path / "out"
    if old:
        save_compressed(conftest.tiny_llama(seed=1), out)
        want = _logits(out)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed while writing the weights")

    monkeypatch.setattr(folder_module, "save_shared", boom)  # config.json is written by then
    with pytest.raises(RuntimeError, match="killed"):
        save_compressed(conftest.tiny_llama(seed=2), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if old else [])  # no staging folder left
    if old:
        assert torch.equal(_logits(out), want)


def test_a_save_killed_midway_leaves_the_old_folder_whole(tmp_path):
    out = tmp_path / "out"
    save_compressed(conftest.tiny_llama(seed=1), out)
    want = _logits(out)
    code = ("import os, signal, sys\nsys.path.insert(0, sys.argv[2])\nimport conftest\n"
            "from colorshare.torch import folder, save_compressed\n"
            "folder.save_shared = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            "save_compressed(conftest.tiny_llama(seed=2), sys.argv[1])\n")
    run = subprocess.run([sys.executable, "-c", code, str(out), str(ROOT / "tests")], capture_output=True,
                         text=True, env=_env(), timeout=300)
    assert run.returncode == -9, run.stderr
    assert torch.equal(_logits(out), want)  # the half-written one is a hidden staging folder beside it
    staged = [p for p in tmp_path.iterdir() if p.name != "out"]
    assert len(staged) == 1 and staged[0].name.startswith(".out.")
    with pytest.raises(ValueError, match="has no model.safetensors"):
        load_compressed(staged[0])


def test_a_save_replaces_a_colorshare_folder_whole_and_refuses_other_folders(tmp_path):
    out = tmp_path / "out"
    save_compressed(conftest.tiny_llama(seed=1), out)
    (out / "stale.txt").write_text("from before")
    save_compressed(conftest.tiny_llama(seed=2), out)
    assert not (out / "stale.txt").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a colorshare folder .*notes.txt"):
        save_compressed(conftest.tiny_llama(), mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_load_compressed_names_each_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_compressed(tmp_path / "nothing")
    with pytest.raises(ValueError, match="has no config.json and no model.safetensors"):
        load_compressed(tmp_path)
    out = tmp_path / "out"
    save_compressed(conftest.tiny_llama(), out)
    (out / "config.json").unlink()
    with pytest.raises(ValueError, match=r"has no config\.json: not a whole folder"):
        load_compressed(out)
