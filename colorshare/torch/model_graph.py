"""Model -> graph: families by shape and role, input scopes, curvature per layer, exact cost and memory of
every sharing action.

The graph keeps references to the model's own weights (no float64 copy of the model) and per-layer
statistics on each layer's device. A group's costs are computed when a solver asks for them, from its
members' statistics (a group's statistics are sums of its layers'), on the members' device. What each
action costs, stores and bounds lives in its own module (:mod:`colorshare.torch.actions`), which reads the
graph through :class:`~colorshare.torch.actions.base.GraphStatistics` only; the graph dispatches to the
actions it was built with.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import defaults
from ..formulations.bounds import FamilyBound, KindBound
from ..formulations.costs import GroupCosts, Option
from ..formulations.graph import SharingGraph
from ..validation import NONE, Real, check
from .actions import ACTIONS, REGISTRY, Action, get_action
from .actions.base import Spectrum, SpectrumCache
from .curvature import KRONECKER, Curvature, matrix_of
from .quant import Quantized, gptq, gptq_widths, rtn, stored_bytes

__all__ = ["ModelGraph", "ModelState", "check_trust_region", "ACTIONS", "DEFAULT_ACTIONS", "DEFAULT_TRUST_REGION",
           "DEFAULT_MAX_GROUP_SIZE",
           "rank_menu"]

DEFAULT_ACTIONS = ("tie", "basis", "input", "dense", "lowrank")
DEFAULT_TRUST_REGION = defaults.TRUST_REGION
"""Default cap on each layer's relative whitened error ``||(W' - W) L||^2 / ||W L||^2`` (see build_graph)."""
DEFAULT_MAX_GROUP_SIZE = defaults.MAX_GROUP_SIZE
"""Default largest sharing class of a model's graph when it may share bases (see build_graph)."""


def check_trust_region(trust_region: Any) -> float | None:
    """None, or a relative whitened error in (0, 1]."""
    check("trust_region", trust_region, NONE, Real(low=0, high=1, low_open=True, what="a relative error"))
    return None if trust_region is None else float(trust_region)


class _LRU:
    """A cache bounded by bytes of tensors held (pitfalls.md: caches keyed by group grow with groups)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.data: OrderedDict[Any, torch.Tensor] = OrderedDict()

    def get(self, key: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        value = make()
        size = value.numel() * value.element_size()
        if size <= self.max_bytes:
            self.data[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.data.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
        return value


def rank_menu(shape: tuple[int, ...]) -> list[int]:
    """The default rank menu: multiples of a step (8 below 512, then 16 per 1024 of ``min(d_out, d_in)``)."""
    d = min(shape[0], int(np.prod(shape[1:])))
    step = 8 if d < 512 else 16 * math.ceil(d / 1024)
    return list(range(step, d, step)) or [max(1, d // 2)]


def _returns(value: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: value


@dataclass
class ModelState:
    """What a :class:`ModelGraph` holds beyond its :class:`SharingGraph`, in one object: the layers (module
    names, weight shapes, the weights themselves and their layout, curvatures), the actions and rank menus, the
    probes' results, the caches and the seconds each preparation step took. A graph under another trust region
    (:meth:`ModelGraph.with_trust_region`) shares it."""

    module_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    params: list[torch.Tensor]
    transposed: list[bool]
    curvatures: list[Curvature]
    is_linear: list[bool]
    actions: tuple[str, ...]
    menus: dict[tuple[int, ...], list[int]]
    rank_rule: Callable[[tuple[int, ...]], list[int]]
    cache: _LRU = field(default_factory=lambda: _LRU(512 * 2**20))
    spectra: SpectrumCache = field(default_factory=lambda: SpectrumCache(4096))
    energies: dict[int, float] = field(default_factory=dict)
    pair_data: defaultdict[str, dict[tuple[int, int], Any]] = field(default_factory=lambda: defaultdict(dict))
    bits: tuple[int, ...] = (16,)
    """The bit-widths a stored tensor may take (16: as it is); more than 16 alone: the graph counts bytes."""
    probe_ratios: Any = None
    probe_set: list[Any] | None = None
    preparation: dict[str, float] = field(default_factory=dict)
    quant_costs: dict[tuple[int, int], float] = field(default_factory=dict)
    """(layer, bits) -> the surrogate cost of storing the layer's weight in that many bits (GPTQ)."""

    def reset(self) -> None:
        """Forget every cached quantity (after the curvatures' scales changed)."""
        self.cache = _LRU(self.cache.max_bytes)
        self.spectra = SpectrumCache(self.spectra.max_items)
        self.energies = {}
        self.pair_data = defaultdict(dict)


class ModelGraph(SharingGraph):
    """A :class:`SharingGraph` built from a model: it keeps references to each layer's weight and its
    curvature, so the shared tensors of a solution are computed exactly as the costs were."""

    def __init__(self, state: ModelState, sizes: Sequence[int] | np.ndarray, names: Sequence[str],
                 families: Sequence[str],
                 conflicts: Iterable[tuple[int, int]] = (), trust_region: float | None = DEFAULT_TRUST_REGION,
                 max_group_size: int | None = None,
                 measured: dict[tuple[tuple[int, ...], str, int], float] | None = None) -> None:
        """A graph over ``state``'s layers (``sizes``: weight parameters; ``families``: one label per layer) whose
        cost oracle and bounds are its own (:meth:`_options`, :meth:`_bounds`)."""
        super().__init__(GroupCosts(self._options, bounds=self._bounds, refine=self.refine,
                                    known_pairs=self.known_pairs), list(sizes), conflicts, list(names),
                         list(families), n=len(names))
        self.state = state
        self.trust_region = check_trust_region(trust_region)
        self.max_group_size = max_group_size
        self._measured = dict(measured or {})
        self.set_scopes([sc for a in self._active() if a.scope != "shape" for sc in a.scopes(self)])

    # ---- what the state holds, read-only ------------------------------------------------------------------
    @property
    def module_names(self) -> tuple[str, ...]:
        return self.state.module_names

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's weight shape, (d_out, d_in) for a linear layer."""
        return self.state.shapes

    @property
    def curvatures(self) -> list[Curvature]:
        return self.state.curvatures

    @property
    def is_linear(self) -> list[bool]:
        return self.state.is_linear

    @property
    def actions(self) -> tuple[str, ...]:
        """The sharing actions the graph was built with (``dense`` is always available to singletons)."""
        return self.state.actions

    @property
    def spectra(self) -> SpectrumCache:
        return self.state.spectra

    @property
    def probe_ratios(self) -> Any:
        """The probed surrogate's per-layer ratios (None for other curvatures)."""
        return self.state.probe_ratios

    @property
    def probe_set(self) -> list[Any] | None:
        """The batches the probes ran on (None for other curvatures)."""
        return self.state.probe_set

    @property
    def preparation(self) -> dict[str, float]:
        """Seconds of each step of building the graph (statistics, probes, pair statistics)."""
        return self.state.preparation

    def rank_rule(self, shape: tuple[int, ...]) -> list[int]:
        """The rank menu of a d_out x d_in matrix (ranks in 1 .. min(d_out, d_in) - 1)."""
        return self.state.rank_rule(shape)

    # ---- memory units and bit-widths --------------------------------------------------------------------
    @property
    def bits_menu(self) -> tuple[int, ...]:
        """The bit-widths a stored tensor may take (16 always: as it is)."""
        return self.state.bits

    @property
    def unit(self) -> str:
        """``"bytes"`` when the graph may quantize (a bit-width below 16), else ``"parameters"``."""
        return "bytes" if any(b < 16 for b in self.state.bits) else "parameters"

    @property
    def per_value(self) -> int:
        """Memory units of one 16-bit value: 1 parameter, or 2 bytes."""
        return 2 if self.unit == "bytes" else 1

    @property
    def dense_parameters(self) -> int:
        """Weights of the graph's layers."""
        return self.dense_size // self.per_value

    def memory(self, rows: int, cols: int, bits: int = 16) -> int:
        """What a rows x cols tensor stored in ``bits`` takes, in the graph's unit."""
        if self.unit == "parameters":
            if bits < 16:
                raise ValueError("a graph that counts parameters stores every tensor in 16 bits")
            return rows * cols
        return stored_bytes(rows, cols, bits)

    def quant_cost(self, i: int, bits: int) -> float:
        """The surrogate cost of storing layer i's weight in ``bits`` (GPTQ under its input covariance for
        input-aware curvature, else round-to-nearest; cached): ``quad_i(W_q - W)``."""
        key = (i, bits)
        if key not in self.state.quant_costs:  # every width of the menu in one pass (GPTQ's loop shared)
            widths = [b for b in self.bits_menu if b < 16 and (i, b) not in self.state.quant_costs]
            W, c = self.weight(i), self.curvatures[i]
            qs = gptq_widths(W, c.covariance(W.device), widths) if c.sigma_in is not None else \
                [rtn(W, b) for b in widths]
            for b, q in zip(widths, qs):
                self.state.quant_costs[(i, b)] = c.quad(q.dequantize(torch.float64) - W)
        return self.state.quant_costs[key]

    def quantized(self, i: int, bits: int) -> torch.Tensor:
        """Layer i's weight as its ``bits``-bit codes stand for it (d_out x d_in, float64, on its device)."""
        return self.quantize(i, bits).dequantize(torch.float64)

    def quantize(self, i: int, bits: int) -> Quantized:
        """Layer i's weight quantized to ``bits`` (GPTQ with its input covariance where the curvature has one)."""
        W, c = self.weight(i), self.curvatures[i]
        if c.sigma_in is not None:
            return gptq(W, c.covariance(W.device), bits)
        return rtn(W, bits)

    # ---- weights, on their own device ---------------------------------------------------------------------
    def device_of(self, i: int) -> torch.device:
        """The device layer ``i``'s statistics live on (its input covariance's, else its weight's)."""
        c = self.curvatures[i]
        return c.sigma_in.device if c.sigma_in is not None else self.state.params[i].device

    def home(self, group: Sequence[int]) -> torch.device:
        """Where a class's shared quantities are computed and its shared tensor is kept: its first member's
        device (a model dispatched over several devices by accelerate's ``device_map``)."""
        return self.device_of(min(group))

    def spans_devices(self, group: Sequence[int]) -> bool:
        """Whether the group's layers sit on more than one device."""
        return len({self.device_of(i) for i in group}) > 1

    def weight(self, i: int, device: torch.device | None = None) -> torch.Tensor:
        """Layer ``i``'s weight as a float64 d_out x d_in matrix on ``device`` (default: the layer's own,
        :meth:`device_of`)."""
        p = self.state.params[i].detach()
        W = p.T if self.state.transposed[i] else matrix_of(p)
        return W.to(device=device or self.device_of(i), dtype=torch.float64)

    def to_layout(self, i: int, W: torch.Tensor) -> torch.Tensor:
        """A d_out x d_in matrix in the layout of layer ``i``'s own weight (transformers' Conv1D: transposed;
        a convolution's kernel shape), on the weight's device and in its dtype."""
        p = self.state.params[i]
        W = W.T if self.state.transposed[i] else W.reshape(p.shape)
        return W.to(device=p.device, dtype=p.dtype)

    @property
    def weights(self) -> list[torch.Tensor]:
        """Every layer's weight in float64 (a copy of all of them: for small models and tests only)."""
        return [self.weight(i) for i in range(self.n)]

    def weight_gram(self, group: Sequence[int]) -> np.ndarray:
        """Inner products ``<W_i, W_j>`` of the group's weights (float64, k x k), computed on their device; only
        the k x k result comes to the host."""
        home = self.home(group)
        W = torch.stack([self.weight(i, home).reshape(-1) for i in group])
        return (W @ W.T).cpu().numpy()

    def rescale(self, ratios: Sequence[float] | np.ndarray) -> None:
        """Multiply each layer's curvature scale by its ratio (the probes'), keeping every cached quantity of one
        layer that scales exactly with it: a singleton's spectrum and energy (times r), its Gram matrices (times
        r), its whitened weight (times sqrt r), its eigenvectors and the input covariance's root (unchanged).
        What mixes layers of different ratios (input scopes, pairs) is forgotten.

        Raises ValueError unless there is one finite positive ratio per layer."""
        shape = getattr(ratios, "shape", (len(ratios),))
        r = [float(x) for x in ratios] if len(shape) == 1 else []
        if len(r) != self.n or not all(math.isfinite(x) and x > 0 for x in r):
            raise ValueError(f"rescale needs one finite positive ratio per layer ({self.n}), got shape "
                             f"{tuple(shape)} (min {min(r, default=float('nan')):g})")
        for c, x in zip(self.curvatures, r):
            c.scale *= x
        st = self.state
        cache, spectra, energies = st.cache, st.spectra, st.energies
        st.reset()
        for (kind, what), value in cache.data.items():  # oldest first: the LRU order is kept
            if kind in ("gram", "zz"):
                value.mul_(r[what])
            elif kind == "z":
                value.mul_(math.sqrt(r[what]))
            elif not (kind == "root" or (kind == "U" and len(what) == 1)):
                continue
            st.cache.get((kind, what), _returns(value))
        for key, spec in spectra.data.items():
            if len(key) == 1 and isinstance(key[0], int):
                st.spectra.put(key, Spectrum(spec.vals * r[key[0]], spec.rel_err))
        st.energies = {i: e * r[i] for i, e in energies.items()}
        if isinstance(self.cost_model, GroupCosts):
            self.cost_model.forget_all()  # options priced at the old scales

    def with_trust_region(self, trust_region: float | None) -> ModelGraph:
        """The same graph (same curvatures and caches, no new statistics) under another trust region; the measured
        prices are copied (each graph's own from here on)."""
        return ModelGraph(self.state, self.sizes, self.names, self.families, self.conflicts, trust_region,
                          self.max_group_size, self._measured)

    # ---- the statistics interface the actions read ----------------------------------------------------------
    def input_aware(self, i: int) -> bool:
        """Whether layer i's curvature is ``h_i (I x Sigma_i)`` (kfac, layerwise, probed): exact spectra apply."""
        return self.curvatures[i].kind == KRONECKER

    def cached(self, key: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A tensor from the graph's byte-bounded cache, made by ``make()`` when absent."""
        return self.state.cache.get(key, make)

    def sigma_root(self, i: int) -> torch.Tensor:
        """``R`` with ``Sigma_i = R R^T``: the eigenvectors of layer i's input covariance scaled by the roots of
        its eigenvalues (exact for singular Sigma; cached, one eigendecomposition per input shared by layers)."""
        c = self.curvatures[i]

        def make() -> torch.Tensor:
            vals, vecs = torch.linalg.eigh(c.covariance())
            return vecs * vals.clamp(min=0).sqrt()
        return self.state.cache.get(("root", id(c.sigma_in)), make)

    def root(self, i: int) -> torch.Tensor:
        """``L_i`` with ``h_i Sigma_i = L_i L_i^T`` (:meth:`sigma_root` times the root of h_i)."""
        return math.sqrt(self.curvatures[i].scale) * self.sigma_root(i)

    def gram(self, i: int) -> torch.Tensor:
        """``h_i W_i Sigma_i W_i^T`` (d_out x d_out) for input-aware curvature, else ``W_i W_i^T`` (cached)."""
        def make() -> torch.Tensor:
            W, c = self.weight(i), self.curvatures[i]
            return c.scale * (W @ c.covariance() @ W.T) if c.kind == KRONECKER else W @ W.T
        return self.state.cache.get(("gram", i), make)

    def whitened(self, i: int) -> torch.Tensor:
        """``Z_i = W_i L_i`` (d_out x d_in, cached): the whitened weight, whose Gram ``Z_i^T Z_i`` is the small
        side of a layer wider out than in (gate/up projections)."""
        return self.state.cache.get(("z", i), lambda: self.weight(i) @ self.root(i))

    def gram_trace(self, i: int) -> float:
        """``tr(h_i W_i Sigma_i W_i^T)`` (input-aware curvature), from the Gram on the layer's smaller side: the
        d_out x d_out Gram, or ``||W_i L_i||^2`` when d_out > d_in (no d_out^2 matrix: 5632^2 for TinyLlama's)."""
        shape = self.shapes[i]
        if shape[0] > int(np.prod(shape[1:])):
            z = self.whitened(i)
            return float((z * z).sum())
        return float(torch.trace(self.gram(i)))

    def energy(self, i: int) -> float:
        """``quad_i(W_i)``: the surrogate of removing layer i entirely (the trust region's denominator)."""
        if i not in self.state.energies:
            self.state.energies[i] = 0.5 * self.gram_trace(i) if self.input_aware(i) else \
                self.curvatures[i].quad(self.weight(i))
        return self.state.energies[i]

    def fits(self, errors: Iterable[float]) -> bool:
        """Whether every member's relative error is inside the trust region."""
        return self.trust_region is None or all(e <= self.trust_region + 1e-12 for e in errors)

    def menu(self, i: int) -> list[int]:
        """The rank menu of layer i's shape."""
        return self.state.menus[self.shapes[i]]

    def pairs(self, kind: str) -> dict[tuple[int, int], Any]:
        """The exact pair data of one kind (an action's ``pair_kind``) known so far: (a, b), a < b -> data."""
        return self.state.pair_data[kind]

    def _active(self) -> list[Action]:
        """The graph's actions (dense always), in the registry's order."""
        return [a for name, a in REGISTRY.items() if name == "dense" or name in self.actions]

    # ---- a class's weights and measured prices ---------------------------------------------------------------
    def class_weights(self, members: Sequence[int], action: str, rank: int | None = None,
                      representative: int | None = None, bits: int = 16) -> list[torch.Tensor]:
        """Each member's weight under one sharing class (float64, d_out x d_in, on the members' device): what
        :func:`~colorshare.torch.apply_coloring` makes the model compute, without changing the model."""
        return get_action(action).weights(self, tuple(members), rank, representative, bits)

    def set_measured(self, members: Sequence[int], action: str, memory: int, cost: float) -> None:
        """Replace the surrogate cost of one option (the class's members, action and parameters stored) by a
        measured one, in the graph's units; solves from then on price that option by it (its bounds too)."""
        group = tuple(sorted(int(i) for i in members))
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"a measured cost must be finite and >= 0, got {cost!r}")
        self._measured[(group, action, int(memory))] = float(cost)
        self.cost_model.forget(group)

    @property
    def measured(self) -> dict[tuple[tuple[int, ...], str, int], float]:
        """The options priced by measurement (:meth:`set_measured`): (members, action, parameters) -> cost."""
        return dict(self._measured)

    # ---- exact costs --------------------------------------------------------------------------------------
    def _scoped(self, group: tuple[int, ...]) -> list[Action]:
        """The graph's actions whose scope holds ``group``: shape actions for one family, input actions for a
        group of one input scope."""
        same_family = len({self.families[i] for i in group}) == 1
        in_scope = len(group) > 1 and bool(self.scopes) and self.in_scope(group)
        return [a for a in self._active() if (same_family if a.scope == "shape" else in_scope)]

    def _options(self, group: tuple[int, ...]) -> list[Option]:
        out = [o for a in self._scoped(group) for o in a.options(self, group)]
        if self._measured:
            out = [dataclasses.replace(o, cost=self._measured.get((group, o.action, o.memory), o.cost)) for o in out]
        return out

    def class_option(self, group: Sequence[int], action: str, memory: int, trust: bool = True) -> Option | None:
        """The exact option of a class given as (members, action, parameters stored), at any basis rank (on the
        menu or not) and, with ``trust=False``, outside the trust region: how a coloring chosen on another graph
        (another estimator, a baseline) is priced on this one. None if no such option exists (also for an action
        no module defines)."""
        group = tuple(sorted(int(i) for i in group))
        act = REGISTRY.get(action)
        return None if act is None else act.class_option(self, group, int(memory), trust)

    # ---- pair statistics for the bounds -------------------------------------------------------------------
    def _pair_readers(self, family: tuple[int, ...]) -> dict[str, Action]:
        """The pair data kinds the bounds of ``family`` read, with the action that computes each."""
        out: dict[str, Action] = {}
        for a in self._active():
            if a.scope == "shape" and a.pair_kind is not None and a.reads_pairs(self, family):
                out.setdefault(a.pair_kind, a)
        return out

    def refine(self, pairs: Sequence[tuple[int, int]], deadline: float | None = None) -> int:
        """Compute the bound data of ``pairs`` (their tails at every menu rank, and their tie's cost) that are not
        known yet, by the cheapest exact path (eigenvalues only; one Cholesky factor), until ``deadline`` (a
        ``time.perf_counter()`` value). Returns how many pairs were done. The bounds of their families then
        hold each pair's exact excess (:meth:`_bounds`)."""
        done = 0
        for a, b in pairs:
            a, b = (a, b) if a < b else (b, a)
            if deadline is not None and time.perf_counter() > deadline:
                break
            computed = False
            for kind, action in self._pair_readers((a, b)).items():
                if (a, b) not in self.state.pair_data[kind]:
                    data = action.pair_data(self, a, b)
                    if data is not None:
                        self.state.pair_data[kind][(a, b)] = data
                computed = computed or (a, b) in self.state.pair_data[kind]
            done += computed
        return done

    def shareable_pairs(self) -> list[tuple[int, int]]:
        """Every pair of one family that may share (no conflict edge between them)."""
        return [(a, b) for m in self.family_members.values() if len(m) > 1 for k, a in enumerate(m) for b in m[k + 1:]
                if self.can_share(a, b)]

    def reads_pairs(self) -> bool:
        """Whether the graph has shareable same-family pairs whose bound data its actions read (what proves
        cross-layer classes)."""
        return any(self._pair_readers((a, b)) for a, b in self.shareable_pairs())

    def pair_statistics(self, progress: bool = True) -> int:
        """Compute the bound data of every shareable pair of every family (:meth:`refine`), with a progress bar,
        so that solves at any budget prove their answers without spending their time limit on it (``build_graph``
        does it as a step of its own where the graph has cross-layer classes). Returns how many pairs were done.
        Measured on SmolLM2 (3,045 pairs), 2-core CPU: about 3.5 minutes, two thirds of it the MLP projections."""
        pairs = self.shareable_pairs()
        done = 0
        with tqdm(total=len(pairs), desc="pair statistics", leave=False, disable=not progress) as bar:
            for k in range(0, len(pairs), 64):
                done += self.refine(pairs[k:k + 64])
                bar.update(len(pairs[k:k + 64]))
        return done

    def known_pairs(self, family: tuple[int, ...]) -> set[tuple[int, int]]:
        """The pairs of ``family`` whose bound data is exact (every kind its bounds read)."""
        kinds = self._pair_readers(family)
        if not kinds:
            return set()
        fam = set(family)
        pairs = set.intersection(*(set(self.state.pair_data[k]) for k in kinds))
        return {p for p in pairs if p[0] in fam and p[1] in fam}

    # ---- bounds for generated columns -------------------------------------------------------------------
    def _bounds(self, family: tuple[int, ...]) -> FamilyBound | None:
        """Lower bounds on every option of every group (2+ members) of ``family``, from its members' own costs
        and the exact costs of the pairs evaluated so far (:mod:`colorshare.formulations.bounds`): each action's
        own (:meth:`Action.bounds`), one per label; None if an action of the family has no bound."""
        pos = {i: k for k, i in enumerate(family)}
        out: dict[str, KindBound] = {}
        for a in self._active():
            if a.scope != "shape":
                continue
            kinds = a.bounds(self, family, pos)
            if kinds is None:
                return None
            for kb in kinds:
                out.setdefault(kb.label, kb)
        return FamilyBound(list(out.values()))


def precompute(graph: ModelGraph, groups: Iterable[tuple[int, ...]], progress: bool = True) -> None:
    """Evaluate the options of ``groups`` now, with a progress bar (the solver would otherwise do it lazily)."""
    groups = list(groups)
    for grp in tqdm(groups, desc="group costs", leave=False, disable=not progress):
        graph.options(grp)
    if not groups:
        warnings.warn("no groups to precompute", RuntimeWarning, stacklevel=2)
