"""Inference speed and memory of causal LMs, dense against compressed, measured side by side in one run.

- prefill: tokens per second of one forward over ``batch x length`` random token ids (no cache);
- decode: tokens per second of greedy generation with the KV cache, from the difference between generating
  ``new + 1`` tokens and 1 token after the same prompt (so the prompt's prefill cancels);
- memory: peak resident memory (bytes) of a fresh process after loading the model folder, and after one
  prefill, above the same process before loading (libraries imported, the architecture built on meta);
- files: the folder's weight files in bytes.

Each speed is the best of ``repeats`` runs after one warm-up run, the models taking turns within each round
(a slow spell of a shared machine then falls on all of them alike).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["speeds", "prefill_speed", "decode_speed", "load_memory", "speed_rows", "markdown_table", "write"]


def _ids(vocab: int, batch: int, length: int, seed: int = 0) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def _prefill(model: Any, vocab: int, batch: int, length: int) -> Callable[[], None]:
    import torch

    ids = _ids(vocab, batch, length).to(next(model.parameters()).device)

    def run() -> None:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)
    return run


def _generate(model: Any, vocab: int, batch: int, n: int, prompt: int) -> Callable[[], None]:
    import torch

    ids = _ids(vocab, batch, prompt, seed=1).to(next(model.parameters()).device)
    mask = torch.ones_like(ids)

    def run() -> None:
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)
    return run


def _best_interleaved(runs: dict[Any, Callable[[], None]], repeats: int) -> dict[Any, float]:
    """The least wall time (seconds) of each run over ``repeats`` rounds after one warm-up, the runs taking
    turns within each round, so that a slow spell of a shared machine falls on all of them alike."""
    for fn in runs.values():
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(max(1, repeats)):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def speeds(models: dict[str, Any], vocab: int, prefill: Sequence[tuple[int, int]] = ((1, 256), (8, 256)),
           decode: Sequence[tuple[int, int]] = ((1, 32), (16, 32)), prompt: int = 32,
           repeats: int = 3) -> dict[str, dict[str, float]]:
    """Tokens per second of every model at every setting, measured side by side (the models take turns):
    ``prefill`` (batch, tokens): one forward without a KV cache; ``decode`` (batch, new tokens): greedy
    generation with the cache after a ``prompt``-token prompt, timed as generating ``new + 1`` tokens minus
    generating 1 (the prompt's prefill and first token cancel)."""
    out: dict[str, dict[str, float]] = {name: {} for name in models}
    for b, n in prefill:
        best = _best_interleaved({k: _prefill(m, vocab, b, n) for k, m in models.items()}, repeats)
        for k, t in best.items():
            out[k][f"prefill {b}x{n} tok/s"] = b * n / t
    for b, n in decode:
        runs = {}
        for k, m in models.items():
            runs[(k, "long")] = _generate(m, vocab, b, n + 1, prompt)
            runs[(k, "short")] = _generate(m, vocab, b, 1, prompt)
        best = _best_interleaved(runs, repeats)
        for k in models:
            out[k][f"decode batch {b} tok/s"] = b * n / max(best[(k, "long")] - best[(k, "short")], 1e-9)
    return out


def prefill_speed(model: Any, vocab: int, batch: int, length: int, repeats: int = 2) -> float:
    """Tokens per second of one forward over ``batch x length`` tokens (no KV cache kept)."""
    return speeds({"m": model}, vocab, ((batch, length),), (), repeats=repeats)["m"][f"prefill {batch}x{length} tok/s"]


def decode_speed(model: Any, vocab: int, batch: int, new: int, prompt: int = 32, repeats: int = 2) -> float:
    """Tokens per second of greedy decoding with the KV cache (see :func:`speeds`)."""
    return speeds({"m": model}, vocab, (), ((batch, new),), prompt, repeats)["m"][f"decode batch {batch} tok/s"]


_LOAD = """
import sys, torch
kind, folder, length, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import transformers
from accelerate import init_empty_weights
from colorshare.timing import GIB, peak_rss_gib
from colorshare.torch import load_compressed
dtype = None if dtype == "native" else getattr(torch, dtype)


def hwm():  # this process's own high-water mark, in bytes (VmHWM: ru_maxrss would carry the parent's over exec)
    return int(peak_rss_gib() * GIB)


with init_empty_weights():  # the architecture's code imported and built, no weights: the baseline
    transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(folder))
marks = [hwm()]
if kind == "compressed":
    model = load_compressed(folder, dtype=dtype)
else:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype or "auto")
marks.append(hwm())
with torch.inference_mode():
    model(input_ids=torch.zeros(1, length, dtype=torch.long), use_cache=False)
marks.append(hwm())
print(*marks)
"""


def load_memory(folder: str | Path, compressed: bool, length: int = 256, dtype: str = "native") -> dict[str, int]:
    """Peak resident memory (bytes, Linux VmHWM) of a fresh process that loads ``folder`` (``load_compressed``
    for a compressed folder, transformers' ``from_pretrained`` for a dense one) in ``dtype`` ("native": the
    folder's own), then runs one prefill of ``length`` tokens: ``{"base", "load", "run", "load_raise",
    "run_raise"}``. ``base`` is the peak before loading (torch, transformers and colorshare imported, the
    architecture built on the meta device), ``load`` after loading, ``run`` after the prefill; the raises are
    the differences to ``base``: what the weights add, and the weights with one forward's activations."""
    import os

    root = str(Path(__file__).resolve().parents[1])  # colorshare importable in the child, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    out = subprocess.run([sys.executable, "-c", _LOAD, "compressed" if compressed else "dense", str(folder),
                          str(length), dtype], capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the memory of loading {folder} failed: {out.stderr.strip()[-400:]}")
    base, load, run = map(int, out.stdout.strip().splitlines()[-1].split())
    return {"base": base, "load": load, "run": run, "load_raise": load - base, "run_raise": run - base}


def speed_rows(models: dict[str, Any], vocab: int, folders: dict[str, str | Path] | None = None,
               compressed: dict[str, bool] | None = None,
               prefill: Sequence[tuple[int, int]] = ((1, 256), (8, 256)),
               decode: Sequence[tuple[int, int]] = ((1, 32), (16, 32)), repeats: int = 3,
               memory: bool = True) -> list[dict[str, Any]]:
    """One row per model with every figure: stored parameters, prefill and decode tokens/s (measured side by
    side, :func:`speeds`), and for a model with a folder its weight files' bytes and (``memory``) the peak
    memory of loading it in a fresh process (:func:`load_memory`; ``compressed[name]``: load_compressed, else
    from_pretrained)."""
    from colorshare.torch import stored_memory, stored_parameters

    fast = speeds(models, vocab, prefill, decode, repeats=repeats)
    rows = []
    for name, model in models.items():
        row: dict[str, Any] = {"model": name, "stored_parameters": stored_parameters(model),
                               "stored_bytes_16bit": stored_memory(model, "bytes"), **fast[name]}
        folder = (folders or {}).get(name)
        if folder is not None:
            files = sorted(Path(folder).glob("*.safetensors"))
            row["weights_bytes"] = sum(f.stat().st_size for f in files)
            if memory:
                mem = load_memory(folder, (compressed or {}).get(name, True))
                row["load_raise_bytes"], row["run_raise_bytes"] = mem["load_raise"], mem["run_raise"]
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], reference: str) -> str:
    """The rows side by side, each figure with its ratio to the ``reference`` row's (speed: higher is better;
    parameters, bytes: lower is better)."""
    ref = next(r for r in rows if r["model"] == reference)
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "model"))
    head = "| | " + " | ".join(r["model"] for r in rows) + " |"
    out = [head, "|---" * (len(rows) + 1) + "|"]
    for k in keys:
        cells = []
        for r in rows:
            v = r.get(k)
            if v is None:
                cells.append("-")
                continue
            if "bytes" in k:
                text = f"{v / 2**20:,.1f} MiB"
            else:
                text = f"{v:,.1f}" if "tok/s" in k else (f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")
            if r is not ref and ref.get(k):
                text += f" ({v / ref[k]:.2f}x)"
            cells.append(text)
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def write(rows: list[dict[str, Any]], out: str | Path, reference: str, header: str = "") -> None:
    """``out``.json (the rows) and ``out``.md (the table under ``header``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    out.with_suffix(".md").write_text(header + "\n" + markdown_table(rows, reference))
