"""A compressed transformers model as a folder that is whole by itself, and loading it without the dense model.

:func:`save_compressed` writes the transformers layout: ``config.json`` (and ``generation_config.json``), the
tokenizer's files, and ``model.safetensors`` (:func:`~colorshare.torch.checkpoint.save_shared`: each shared tensor
once, the sharing plan in its metadata) in the source's dtype or another; it builds the folder beside its target
and renames it into place whole (:mod:`colorshare.staging`), so a folder is never half-written. :func:`load_compressed`
builds the architecture from ``config.json`` on the meta device (accelerate's ``init_empty_weights``: no dense
weight is ever allocated), puts each action's modules in place, checks every tensor of the file against it
(:func:`~colorshare.torch.checkpoint.check_tensors`), re-ties the shared tensors and assigns the file's tensors, so
the memory it needs is about the folder's size. It returns the transformers model: ``generate`` and the pipelines
work on it.

Nothing in a folder runs: transformers is always asked with ``trust_remote_code=False``, and a folder whose
``config.json`` or ``tokenizer_config.json`` maps classes to its own Python files (``auto_map``) is refused
before transformers reads it (:func:`check_no_remote_code`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..staging import publish, staging_folder
from .actions.base import parent_of
from .checkpoint import check_tensors, is_shared_file, read_plan, rebuild_modules, save_shared

__all__ = ["save_compressed", "load_compressed", "DTYPES", "source_dtype", "check_no_remote_code",
           "check_not_compressed", "REMOTE_CODE_FILES"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes a compressed folder may be written in, by name."""

WEIGHTS = "model.safetensors"
CONFIG = "config.json"

REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json")
"""The files of a model folder whose ``auto_map`` would make transformers import the folder's own Python code."""


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_no_remote_code(folder: str | Path) -> None:
    """ValueError naming the file and its entries if ``folder``'s ``config.json`` or ``tokenizer_config.json``
    has an ``auto_map`` (classes from Python files of the folder, which transformers would import, asking on
    standard input first): colorshare never runs a model folder's code. Reads the JSON only, before transformers
    is asked anything; a file that is not a JSON object is refused too."""
    for name in REMOTE_CODE_FILES:
        f = Path(folder) / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{f} cannot be read as JSON: {_line(exc)}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{f} must hold a JSON object, got {type(data).__name__}")
        auto = data.get("auto_map")
        if auto:
            entries = ([f"{k} -> {v}" for k, v in auto.items()] if isinstance(auto, dict) else
                       [str(v) for v in (auto if isinstance(auto, list) else [auto])])
            shown = "; ".join(entries[:3]) + ("; ..." if len(entries) > 3 else "")
            raise ValueError(f"{f} has an auto_map ({shown}): the "
                             "folder asks to run its own Python code, and colorshare never runs a model folder's "
                             "code (trust_remote_code=False); use a model whose architecture transformers ships")


def check_not_compressed(folder: str | Path) -> None:
    """ValueError if ``folder`` holds a safetensors file with a colorshare sharing plan: a folder colorshare
    wrote, which transformers would read as a model with missing weights (filled with random values)."""
    for f in sorted(Path(folder).glob("*.safetensors")):
        if is_shared_file(f):
            raise ValueError(f"{folder} is a colorshare folder ({f.name} holds a colorshare sharing plan), not a "
                             f"source model: load it with colorshare.torch.load_compressed({str(folder)!r}); to "
                             "compress again, start from the original model")


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


def _check_replaceable(out: Path) -> None:
    """ValueError unless ``out`` is absent, an empty folder, or a folder colorshare wrote (replaced whole)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if entries and not is_shared_file(out / WEIGHTS):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(f"{out} exists and is not a colorshare folder ({shown}): save_compressed replaces its "
                         "target whole; give a new or empty folder")


def save_compressed(model: nn.Module, out: str | Path, tokenizer: Any = None,
                    dtype: str | torch.dtype | None = None) -> Path:
    """Write ``model`` (a transformers model, shared or not) as a folder that loads by itself: config,
    generation config, ``tokenizer``'s files (if given) and ``model.safetensors`` with floating parameters in
    ``dtype`` (name or torch dtype; None: as they are; buffers keep theirs). Returns the folder.

    The folder is written beside ``out`` and renamed into place when every file is written; an existing ``out``
    (empty, or a folder colorshare wrote) is replaced whole, so a failed or killed save leaves the old folder
    or none, never a mix. TypeError for a model without a transformers config; ValueError for an ``out`` that
    is a file or a folder of other files."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "save_pretrained"):
        raise TypeError("save_compressed needs a transformers model (with a config); use save_shared otherwise")
    dt = _dtype(dtype)
    out = Path(out)
    target = Path(os.path.abspath(out))  # "." and ".." resolved: the staging folder goes beside the target
    _check_replaceable(target)
    config = config.__class__.from_dict(config.to_dict())  # a copy: the caller's model keeps its own
    config.architectures = [type(model).__name__]
    if dt is not None:
        config.dtype = dt
    stage = staging_folder(target)
    try:
        config.save_pretrained(stage)
        gen = getattr(model, "generation_config", None)
        if gen is not None and getattr(model, "can_generate", lambda: False)():
            gen.save_pretrained(stage)
        if tokenizer is not None:
            tokenizer.save_pretrained(stage)
        save_shared(model, stage / WEIGHTS, dtype=dt)
        publish(stage, target)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
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


def _check_whole(folder: Path) -> None:
    """ValueError naming what is missing unless ``folder`` has its config.json and model.safetensors."""
    if not folder.exists():
        raise ValueError(f"{folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder written by colorshare compress")
    missing = [n for n in (CONFIG, WEIGHTS) if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{folder} has no {' and no '.join(missing)}: not a whole folder written by colorshare "
                         "(save_compressed / colorshare compress)")


def load_compressed(path: str | Path, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None) -> nn.Module:
    """The model of a folder written by :func:`save_compressed` (``colorshare compress``), built without
    materializing dense weights: on ``device`` (default CPU), in ``dtype`` (default: the file's), in eval
    mode, with the folder's generation config. Nothing is trusted: ValueError naming the file and the problem
    for a folder without ``config.json`` or ``model.safetensors``, one that asks to run its own code
    (:func:`check_no_remote_code`), a file without a valid sharing plan
    (:func:`~colorshare.torch.checkpoint.read_plan`), or tensors that do not fit the architecture
    ``config.json`` describes: shapes, dtypes, NaN / inf (:func:`~colorshare.torch.checkpoint.check_tensors`)."""
    import transformers
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    folder = Path(path)
    _check_whole(folder)
    check_no_remote_code(folder)  # before transformers reads anything
    weights = folder / WEIGHTS
    dt = _dtype(dtype)
    plan = read_plan(weights)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder / CONFIG} cannot be read by transformers: {_line(exc)}") from None
    cls = _model_class(config, folder)
    try:
        with init_empty_weights(include_buffers=False):  # parameters on meta: nothing dense is allocated
            model = cls._from_config(config)
    except Exception as exc:  # noqa: BLE001 - whatever a config's values make transformers raise
        raise ValueError(f"{folder / CONFIG}: transformers cannot build {cls.__name__} from it: {_line(exc)}") from None
    rebuild_modules(model, plan, str(weights))
    tensors = load_file(str(weights), device=str(device or "cpu"))
    check_tensors(model, plan, tensors, str(weights), f"{cls.__name__} as {folder / CONFIG} describes it")
    aliases = plan.get("aliases", {})
    made: dict[str, nn.Parameter] = {}
    for name in dict(model.named_parameters(remove_duplicate=False)):
        canon = aliases.get(name, name)
        if canon not in made:
            t = tensors[canon]
            t = t.to(dt) if dt is not None and t.is_floating_point() else t
            made[canon] = nn.Parameter(t, requires_grad=t.is_floating_point())
        owner, attr = parent_of(model, name)
        setattr(owner, attr, made[canon])  # one Parameter for every name the plan ties to it
    for name, buf in list(model.named_buffers()):
        owner, attr = parent_of(model, name)
        owner._buffers[attr] = tensors.get(name, buf).to(device or "cpu")  # as saved (rotary tables, codes)
    _generation_config(model, folder)
    return model.eval()


def _generation_config(model: nn.Module, folder: Path) -> None:
    """The folder's ``generation_config.json`` on ``model`` (where it has one and can generate)."""
    f = folder / "generation_config.json"
    if not f.is_file() or not getattr(model, "can_generate", lambda: False)():
        return
    from transformers import GenerationConfig

    try:
        cast(Any, model).generation_config = GenerationConfig.from_pretrained(str(folder), local_files_only=True,
                                                                              trust_remote_code=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{f} cannot be read by transformers: {_line(exc)}") from None
