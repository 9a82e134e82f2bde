"""A compressed transformers model as a folder that is whole by itself, and loading it without the dense model.

:func:`save_compressed` writes the transformers layout: ``config.json`` (and ``generation_config.json``), the
tokenizer's files, and ``model.safetensors`` (:func:`~colorshare.torch.checkpoint.save_shared`: each shared tensor
once, the sharing plan in its metadata) in the source's dtype or another. :func:`load_compressed` builds the
architecture from ``config.json`` on the meta device (accelerate's ``init_empty_weights``: no dense weight
is ever allocated), puts each action's modules in place, re-ties the shared tensors and assigns the file's
tensors, so the memory it needs is about the folder's size. It returns the transformers model: ``generate``
and the pipelines work on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .actions.base import parent_of
from .checkpoint import read_plan, rebuild_modules, save_shared

__all__ = ["save_compressed", "load_compressed", "DTYPES", "source_dtype"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes a compressed folder may be written in, by name."""

WEIGHTS = "model.safetensors"


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def source_dtype(path: str | Path) -> str:
    """The dtype a source model ships in, by name: a folder's ``config.json`` (``torch_dtype`` / ``dtype``),
    float32 where it says nothing; a GGUF file: float32 / float16 / bfloat16 for unquantized weights, and
    bfloat16 for quantized ones (their 4- or 8-bit blocks have no safetensors dtype; 16 bits keep them)."""
    p = Path(path)
    if p.suffix == ".gguf":
        try:
            from gguf import GGUFReader

            kinds = {t.tensor_type.name for t in GGUFReader(str(p)).tensors if len(t.shape) > 1}
        except Exception:  # noqa: BLE001 - an unreadable header: the safe choice
            return "bfloat16"
        if kinds <= {"F32"}:
            return "float32"
        if kinds <= {"F16", "F32"}:
            return "float16"
        return "bfloat16"
    cfg = p / "config.json" if p.is_dir() else p
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return "float32"
    name = str(data.get("torch_dtype") or data.get("dtype") or "float32").replace("torch.", "")
    return name if name in DTYPES else "float32"


def save_compressed(model: nn.Module, out: str | Path, tokenizer: Any = None,
                    dtype: str | torch.dtype | None = None) -> Path:
    """Write ``model`` (a transformers model, shared or not) as a folder that loads by itself: config,
    generation config, ``tokenizer``'s files (if given) and ``model.safetensors`` with floating parameters in
    ``dtype`` (name or torch dtype; None: as they are; buffers keep theirs). Returns the folder. TypeError for
    a model without a transformers config."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "save_pretrained"):
        raise TypeError("save_compressed needs a transformers model (with a config); use save_shared otherwise")
    dt = _dtype(dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config.__class__.from_dict(config.to_dict())  # a copy: the caller's model keeps its own
    config.architectures = [type(model).__name__]
    if dt is not None:
        config.dtype = dt
    config.save_pretrained(out)
    gen = getattr(model, "generation_config", None)
    if gen is not None and getattr(model, "can_generate", lambda: False)():
        gen.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    save_shared(model, out / WEIGHTS, dtype=dt)
    return out


def _model_class(config: Any, path: Path) -> Any:
    import transformers

    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    try:
        return transformers.AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        raise ValueError(f"{path}: config.json names no transformers architecture this version knows "
                         f"({getattr(config, 'architectures', None)})") from None


def load_compressed(path: str | Path, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None) -> nn.Module:
    """The model of a folder written by :func:`save_compressed` (``colorshare compress``), built without
    materializing dense weights: on ``device`` (default CPU), in ``dtype`` (default: the file's), in eval
    mode. ValueError naming the problem for a folder without ``config.json`` or ``model.safetensors``, a file
    without a sharing plan, or tensors that do not fit the architecture."""
    import transformers
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    folder = Path(path)
    weights = folder / WEIGHTS
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: not a folder written by colorshare compress")
    if not weights.is_file():
        raise ValueError(f"{folder} has no {WEIGHTS}")
    dt = _dtype(dtype)
    plan = read_plan(weights)
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    cls = _model_class(config, folder)
    with init_empty_weights(include_buffers=False):  # parameters on meta: nothing dense is allocated
        model = cls._from_config(config)
    rebuild_modules(model, plan, str(weights))
    tensors = load_file(str(weights), device=str(device or "cpu"))
    slots = dict(model.named_parameters(remove_duplicate=False))
    aliases = plan.get("aliases", {})
    made: dict[str, nn.Parameter] = {}
    for name, old in slots.items():
        canon = aliases.get(name, name)
        if canon not in tensors:
            raise ValueError(f"parameter {name!r} of {cls.__name__} is not in {weights}")
        if canon not in made:
            t = tensors[canon]
            if tuple(t.shape) != tuple(old.shape):
                raise ValueError(f"tensor {canon!r} has shape {tuple(t.shape)} in {weights} but {tuple(old.shape)} "
                                 f"in {cls.__name__}: is it the same architecture?")
            t = t.to(dt) if dt is not None and t.is_floating_point() else t
            made[canon] = nn.Parameter(t, requires_grad=t.is_floating_point())
        owner, attr = parent_of(model, name)
        setattr(owner, attr, made[canon])  # one Parameter for every name the plan ties to it
    for name, buf in list(model.named_buffers()):
        owner, attr = parent_of(model, name)
        t = tensors.get(name, buf)
        if name in tensors and tuple(t.shape) != tuple(buf.shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)} in {weights} but {tuple(buf.shape)} in "
                             f"{cls.__name__} as its plan rebuilds it")
        owner._buffers[attr] = t.to(device or "cpu")  # as saved (rotary tables: float32; quantized codes)
    return model.eval()
