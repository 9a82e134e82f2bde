"""``build_graph``: a model and calibration batches in, its :class:`~colorshare.torch.model_graph.ModelGraph`
out, in steps whose seconds the graph keeps (``graph.preparation``): statistics (curvature), probes (the probed
surrogate) and pair statistics (cross-layer classes)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import defaults
from ..validation import NONE, POSITIVE_INT, OneOf, Real, check, check_max_group_size
from .actions import REGISTRY
from .curvature import DEFAULT_CURVATURE, Curvature, estimate
from .model_graph import (
    DEFAULT_ACTIONS,
    DEFAULT_MAX_GROUP_SIZE,
    DEFAULT_TRUST_REGION,
    ModelGraph,
    ModelState,
    check_trust_region,
    rank_menu,
)
from .quant import BITS
from .targets import blocks_of, is_linear, is_transposed, layer_shape, role_of, select_modules, weight_of

__all__ = ["build_graph"]


def build_graph(
    model: nn.Module,
    batches: Iterable[Any],
    targets: str | Iterable[str] | None = None,
    curvature: str = DEFAULT_CURVATURE,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    exclude: str | Iterable[str] | None = None,
    actions: Sequence[str] = DEFAULT_ACTIONS,
    ranks: Sequence[int] | Callable[[tuple[int, ...]], Sequence[int]] | None = None,
    trust_region: float | None = DEFAULT_TRUST_REGION,
    mix_roles: bool = False,
    probes: int = 4,
    k: int = 4,
    seed: int = 0,
    probe_batches: int = 2,
    probe_fraction: float = 0.5,
    probe_tokens: int | None = defaults.PROBE_TOKENS,
    max_group_size: int | None | str = "auto",
    cross_layer: bool = defaults.CROSS_LAYER,
    prepare: bool = True,
    bits: Sequence[int] | None = None,
    progress: bool = True,
) -> ModelGraph:
    """Build the sharing graph of ``model``'s shareable layers from calibration ``batches``.

    Parameters
    ----------
    model : any ``nn.Module``, on any device or spread over several by accelerate's ``device_map`` (statistics
        stay on each layer's device; ties and medoids are offered only to layers on one device); not modified.
    batches : iterable of model inputs (tensor; tuple whose first element is the input; dict of keyword
        arguments, so a transformers model works as it is), on the model's device. Iterated once.
    targets, exclude : module name patterns (regex full match or name suffix); default every Linear/Conv
        with a same-shaped peer. A pattern matching nothing is a ValueError naming it.
    curvature : ``probed`` (default: ``kfac``, each layer's level fitted to one measured probe cut, see
        :mod:`colorshare.torch.probe`), ``kfac`` (input covariance x output-gradient Fisher of the
        self-distillation loss), ``layerwise`` (input covariance only, no loss), ``fisher``, ``hutchinson``,
        ``spectrum``, ``trace``.
    loss_fn : ``loss_fn(output, batch) -> scalar``; default: the sampled self-distillation Fisher
        (KL of the next-token distribution for a causal LM, the pooled embedding for an encoder).
    actions : subset of ``tie``, ``medoid``, ``basis``, ``input``, ``dense`` (:mod:`colorshare.torch.actions`;
        dense is always available to singletons).
    ranks : rank menu for ``basis`` (default :func:`rank_menu`: multiples of 8 or 16), or a function of the shape.
    trust_region : the largest relative whitened error ``||(W' - W) L||^2 / ||W L||^2`` any layer may take
        (0..1; None: no limit): options that break it are left out, where the second-order model is not valid.
    mix_roles : let same-shaped layers of different roles share (default: a family = one role and shape).
    probe_batches, probe_fraction, probe_tokens : ``probed`` only: each probe cuts its layer to ``probe_fraction``
        of its full rank on the first ``probe_batches`` batches, of transformers batches the first whole
        sequences that hold ``probe_tokens`` tokens (None: whole batches); kept as ``graph.probe_set``.
    max_group_size : the largest sharing class; ``"auto"`` (default): 2 (Basis Sharing's group size) when ``basis``
        is an action, else None (a whole family). A pair's exact cost bounds it exactly; a class of k > 2 layers
        is bounded by its pairs only to ``1/(k-1)`` of their excess, too weak to prove deep families.
    cross_layer : let layers of one family in different repeated blocks (a transformer's decoder layers) share.
        False (the default, as in ``colorshare compress``): classes stay within a block, proven in time linear
        in the layers; a model without repeated blocks (a plain MLP) is one block.
    prepare : do now, as steps of their own with progress bars, what the first solve would otherwise do inside
        its time limit: quantize every layer (with bits), price every layer's and input scope's options, and
        compute the pair statistics of cross-layer classes. False leaves it to the solves.
    bits : bit-widths a weight may be stored in (:data:`~colorshare.torch.quant.BITS`; 16 always). None: 16
        only, the graph counts parameters; below 16: it counts bytes and a linear layer may be quantized (GPTQ,
        priced by the surrogate of its rounding error: the step ``"quantization"``).

    Returns
    -------
    :class:`ModelGraph` of group costs; ``graph.preparation``: each step's seconds.

    Raises
    ------
    ValueError naming the layer whose weight holds NaN or inf, an unknown action or curvature, a pattern
    that matches nothing, or a layer the calibration batches never reach.

    Example
    -------
    >>> g = build_graph(model, batches)                      # doctest: +SKIP
    >>> sol = solve(g, 0.6 * g.dense_size, backend="highs")  # doctest: +SKIP
    """
    mgs = _check_arguments(actions, trust_region, max_group_size, curvature, probe_batches, probe_fraction,
                           probe_tokens)
    menu = _check_bits(bits)
    if curvature == "probed":
        batches = list(batches)  # iterated twice: statistics, then the probes
    modules = _modules(model, targets, exclude)
    t = time.perf_counter()
    curv = estimate(model, modules, batches, curvature, loss_fn, probes=probes, k=k, seed=seed, progress=progress)
    blocks = None if cross_layer else blocks_of(model, [n for n in modules if n in curv])
    g = _graph(modules, curv, actions, ranks, trust_region, mix_roles, mgs, blocks, menu)
    g.preparation["statistics"] = time.perf_counter() - t
    if curvature == "probed":
        t = time.perf_counter()
        _probe(g, modules, model, list(batches)[:probe_batches], loss_fn, probe_fraction, probe_tokens, progress)
        g.preparation["probes"] = time.perf_counter() - t
    if prepare:
        _prepare(g, progress)
    return g


def _check_arguments(actions: Sequence[str], trust_region: Any, max_group_size: Any, curvature: str,
                     probe_batches: Any, probe_fraction: Any, probe_tokens: Any) -> int | None:
    """ValueError naming a bad argument of :func:`build_graph`; the resolved largest class."""
    bad = set(actions) - set(REGISTRY)
    if bad:
        raise ValueError(f"unknown action(s) {sorted(bad)}; valid: {', '.join(REGISTRY)}")
    check_trust_region(trust_region)
    if max_group_size == "auto":
        max_group_size = DEFAULT_MAX_GROUP_SIZE if "basis" in actions else None
    mgs = check_max_group_size(max_group_size)
    if curvature == "probed":
        check("probe_batches", probe_batches, POSITIVE_INT)
        check("probe_fraction", probe_fraction, Real(low=0, high=1, low_open=True, high_open=True))
        check("probe_tokens", probe_tokens, NONE, POSITIVE_INT)
    return mgs


def _modules(model: nn.Module, targets: Any, exclude: Any) -> dict[str, nn.Module]:
    """The targeted modules; ValueError naming one whose weight is on the meta device or not finite."""
    modules = select_modules(model, targets, exclude)
    for n, m in modules.items():
        w = weight_of(m).detach()
        if w.is_meta:
            raise ValueError(f"layer {n!r} has its weight on the meta device (offloaded by accelerate's device_map to "
                             "'cpu' or 'disk' next to a GPU, or not loaded): colorshare needs every target layer's "
                             "weight on a device; give the model devices for all its blocks (GPUs, or the CPU alone)")
        if not bool(torch.isfinite(w).all()):
            bad_count = int((~torch.isfinite(w)).sum())
            raise ValueError(f"layer {n!r} has {bad_count} NaN or infinite weight value(s); "
                             "colorshare cannot estimate what sharing it costs")
    return modules


def _graph(modules: dict[str, nn.Module], curv: dict[str, Curvature], actions: Sequence[str], ranks: Any,
           trust_region: float | None, mix_roles: bool, max_group_size: int | None,
           blocks: list[int | None] | None, bits: tuple[int, ...] = (16,)) -> ModelGraph:
    """The graph of the layers the statistics reached: families by role and shape, one :class:`ModelState`;
    ``blocks``: each layer's repeated block, where classes stay within one (None: no such limit)."""
    names = [n for n in modules if n in curv]
    shapes = [layer_shape(modules[n]) for n in names]
    fams = [f"{shape}" if mix_roles else f"{role_of(n)} {shape}" for n, shape in zip(names, shapes)]

    def rank_rule(s: tuple[int, ...]) -> list[int]:
        d = min(s[0], int(np.prod(s[1:])))
        menu = ranks(s) if callable(ranks) else (ranks if ranks is not None else rank_menu(s))
        return sorted({int(r) for r in menu if 0 < int(r) < d})

    state = ModelState(tuple(names), tuple(shapes), [weight_of(modules[n]) for n in names],
                       [is_transposed(modules[n]) for n in names], [curv[n] for n in names],
                       [is_linear(modules[n]) for n in names], tuple(actions), {s: rank_rule(s) for s in set(shapes)},
                       rank_rule, bits=bits)
    conflicts: list[tuple[int, int]] = []
    if blocks is not None:  # two layers of one family in different blocks never share
        members: dict[str, list[int]] = defaultdict(list)
        for i, f in enumerate(fams):
            members[f].append(i)
        conflicts = [(a, b) for m in members.values() for k, a in enumerate(m) for b in m[k + 1:]
                     if blocks[a] != blocks[b]]
    per_value = 2 if any(b < 16 for b in bits) else 1  # bytes of a 16-bit weight, or one parameter
    return ModelGraph(state, [per_value * int(np.prod(s)) for s in shapes], names, fams, conflicts, trust_region,
                      max_group_size)


def _check_bits(bits: Sequence[int] | None) -> tuple[int, ...]:
    """The bit-width menu, 16 included, widest first; ValueError naming a width colorshare cannot store."""
    if bits is None:
        return (16,)
    if isinstance(bits, (str, bytes)) or not hasattr(bits, "__iter__"):
        raise ValueError(f"bits must be a sequence of bit-widths from {BITS}, got {bits!r}")
    menu = {16}
    for b in bits:
        menu.add(int(check("bits", b, OneOf(BITS))))
    return tuple(sorted(menu, reverse=True))


def _prepare(g: ModelGraph, progress: bool) -> None:
    """The graph's one-time work, each a step with its seconds in ``g.preparation``: every linear layer quantized
    at every bit-width below 16 (GPTQ), the options of every layer and input-scope group, and the pair
    statistics of cross-layer classes."""
    todo = [i for i in range(g.n) if g.is_linear[i] and len(g.shapes[i]) == 2] if min(g.bits_menu) < 16 else []
    if todo:
        t = time.perf_counter()
        for i in tqdm(todo, desc="quantization", leave=False, disable=not progress):
            g.quant_cost(i, min(g.bits_menu))  # every width of the menu in one pass
        g.preparation["quantization"] = time.perf_counter() - t
    t = time.perf_counter()
    for grp in tqdm([(i,) for i in range(g.n)] + g.scope_groups(), desc="options", leave=False,
                    disable=not progress):
        g.options(grp)
    g.preparation["options"] = time.perf_counter() - t
    if g.reads_pairs():
        t = time.perf_counter()
        g.pair_statistics(progress)
        g.preparation["pair statistics"] = time.perf_counter() - t


def _probe(g: ModelGraph, modules: dict[str, nn.Module], model: nn.Module, batches: list[Any], loss_fn: Any,
           fraction: float, tokens: int | None, progress: bool) -> None:
    """Fit each layer's curvature level to one measured probe cut (:mod:`colorshare.torch.probe`)."""
    from .batches import first_sequences
    from .probe import probe_scales

    g.state.probe_set = first_sequences(batches, tokens)
    ratios = probe_scales(g, {n: modules[n] for n in g.module_names}, model, g.state.probe_set, loss_fn, fraction,
                          progress)
    g.rescale(ratios)  # what the probes computed for one layer scales with its ratio: kept, not recomputed
    g.state.probe_ratios = ratios
