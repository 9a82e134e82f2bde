"""Model -> graph: families by shape and role, input scopes, curvature per layer, exact cost and memory of
every sharing action.

The graph keeps references to the model's own weights (no float64 copy of the model) and per-layer
statistics on each layer's device. A group's costs are computed when a solver asks for them, from its
members' statistics (a group's statistics are sums of its layers'), on the members' device. What each
action costs, stores and bounds lives in its own module (:mod:`colorshare.torch.actions`); the graph holds
the statistics they read (its "statistics interface": weight, root, whitened, gram, gram_trace, energy, fits,
menu, cached, spectra, pairs, measured, home) and dispatches to the actions it was built with.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dataclasses
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..formulations.bounds import FamilyBound, KindBound
from ..formulations.costs import GroupCosts, Option
from ..formulations.graph import SharingGraph
from .actions import ACTIONS, REGISTRY, Action, get_action
from .actions.base import Spectrum, SpectrumCache
from .actions.basis import basis_factors, basis_option, spectrum
from .actions.input import input_factors, input_menu
from .actions.tie import tie_center
from .curvature import DEFAULT_CURVATURE, Curvature, estimate, matrix_of
from .targets import is_linear, is_transposed, layer_shape, role_of, select_modules

__all__ = ["ModelGraph", "build_graph", "ACTIONS", "DEFAULT_ACTIONS", "DEFAULT_TRUST_REGION", "DEFAULT_MAX_GROUP_SIZE",
           "rank_menu"]

DEFAULT_ACTIONS = ("tie", "basis", "input", "dense")
DEFAULT_TRUST_REGION = 0.6
"""Default cap on each layer's relative whitened error ``||(W' - W) L||^2 / ||W L||^2`` (see build_graph)."""
DEFAULT_MAX_GROUP_SIZE = 2
"""Default largest sharing class of a model's graph when it may share bases (see build_graph)."""


def _check_trust_region(trust_region: Any) -> float | None:
    if trust_region is not None and not (isinstance(trust_region, (int, float)) and 0 < trust_region <= 1):
        raise ValueError(f"trust_region must be None or a relative error in (0, 1], got {trust_region!r}")
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


_MODEL_STATE = ("module_names", "shapes", "_params", "_transposed", "curvatures", "is_linear", "actions", "_menus",
                "rank_rule",
                "scopes", "_scope_of", "_cache", "spectra", "_energies", "probe_ratios", "probe_set", "_pairs",
                "max_group_size",
                "_measured")
"""What a :class:`ModelGraph` holds beyond its :class:`SharingGraph` (set by build_graph)."""


class ModelGraph(SharingGraph):
    """A :class:`SharingGraph` built from a model: it keeps references to each layer's weight and its
    curvature, so the shared tensors of a solution are computed exactly as the costs were."""

    module_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    curvatures: list[Curvature]
    is_linear: list[bool]
    trust_region: float | None
    actions: tuple[str, ...]
    """The sharing actions the graph was built with (``dense`` is always available to singletons)."""
    rank_rule: Callable[[tuple[int, ...]], list[int]]
    """The rank menu of a d_out x d_in matrix (ranks in 1 .. min(d_out, d_in) - 1)."""
    spectra: SpectrumCache

    # ---- weights, on their own device ---------------------------------------------------------------------
    def device_of(self, i: int) -> torch.device:
        """The device layer ``i``'s statistics live on (its input covariance's, else its weight's)."""
        c = self.curvatures[i]
        return c.sigma_in.device if c.sigma_in is not None else self._params[i].device

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
        p = self._params[i].detach()
        W = p.T if self._transposed[i] else matrix_of(p)
        return W.to(device=device or self.device_of(i), dtype=torch.float64)

    def to_layout(self, i: int, W: torch.Tensor) -> torch.Tensor:
        """A d_out x d_in matrix in the layout of layer ``i``'s own weight (transformers' Conv1D: transposed;
        a convolution's kernel shape), on the weight's device and in its dtype."""
        p = self._params[i]
        W = W.T if self._transposed[i] else W.reshape(p.shape)
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

    def _reset(self) -> None:
        """Forget every cached quantity (after the curvatures' scales changed)."""
        self._cache = _LRU(self._cache.max_bytes)
        self.spectra = SpectrumCache(self.spectra.max_items)
        self._energies = {}
        self._pairs = defaultdict(dict)

    def _rescale(self, ratios: Sequence[float]) -> None:
        """Multiply each layer's curvature scale by its ratio (the probes'), keeping every cached quantity of one
        layer that scales exactly with it: a singleton's spectrum and energy (times r), its Gram matrices (times
        r), its whitened weight (times sqrt r), its eigenvectors and the input covariance's root (unchanged).
        What mixes layers of different ratios (input scopes, pairs) is forgotten."""
        r = [float(x) for x in ratios]
        for c, x in zip(self.curvatures, r):
            c.scale *= x
        cache, spectra, energies = self._cache, self.spectra, self._energies
        self._reset()
        for (kind, what), value in cache.data.items():  # oldest first: the LRU order is kept
            if kind in ("gram", "zz"):
                value.mul_(r[what])
            elif kind == "z":
                value.mul_(math.sqrt(r[what]))
            elif not (kind == "root" or (kind == "U" and len(what) == 1)):
                continue
            self._cache.get((kind, what), lambda v=value: v)
        for key, spec in spectra.data.items():
            if len(key) == 1 and isinstance(key[0], int):
                self.spectra.put(key, Spectrum(spec.vals * r[key[0]], spec.rel_err))
        self._energies = {i: e * r[i] for i, e in energies.items()}

    @classmethod
    def _empty(cls, sizes: Sequence[int], names: Sequence[str], families: Sequence[str],
               conflicts: Iterable[tuple[int, int]] = ()) -> ModelGraph:
        """A graph whose cost oracle and bounds are its own ``_options`` and ``_bounds`` (state set by the caller)."""
        holder: dict[str, ModelGraph] = {}
        g = cls(GroupCosts(lambda grp: holder["g"]._options(grp), bounds=lambda fam: holder["g"]._bounds(fam),
                           refine=lambda pairs, deadline=None: holder["g"].refine(pairs, deadline),
                           known_pairs=lambda fam: holder["g"].known_pairs(fam)),
                list(sizes), conflicts, list(names), list(families), n=len(names))
        holder["g"] = g
        return g

    def with_trust_region(self, trust_region: float | None) -> ModelGraph:
        """The same graph (same curvatures and caches, no new statistics) under another trust region."""
        g = ModelGraph._empty(self.sizes, self.names, self.families, self.conflicts)
        for key in _MODEL_STATE:
            setattr(g, key, getattr(self, key))
        g._measured = dict(self._measured)  # measured prices are the graph's own from here on
        g.trust_region = _check_trust_region(trust_region)
        return g

    # ---- the statistics interface the actions read ----------------------------------------------------------
    def input_aware(self, i: int) -> bool:
        """Whether layer i's curvature is ``h_i (I x Sigma_i)`` (kfac, layerwise, probed): exact spectra apply."""
        return self.curvatures[i].kind == "layerwise"

    def cached(self, key: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A tensor from the graph's byte-bounded cache, made by ``make()`` when absent."""
        return self._cache.get(key, make)

    def sigma_root(self, i: int) -> torch.Tensor:
        """``R`` with ``Sigma_i = R R^T``: the eigenvectors of layer i's input covariance scaled by the roots of
        its eigenvalues (exact for singular Sigma; cached, one eigendecomposition per input shared by layers)."""
        c = self.curvatures[i]

        def make() -> torch.Tensor:
            vals, vecs = torch.linalg.eigh(c.covariance())
            return vecs * vals.clamp(min=0).sqrt()
        return self._cache.get(("root", id(c.sigma_in)), make)

    def root(self, i: int) -> torch.Tensor:
        """``L_i`` with ``h_i Sigma_i = L_i L_i^T`` (:meth:`sigma_root` times the root of h_i)."""
        return math.sqrt(self.curvatures[i].scale) * self.sigma_root(i)

    def gram(self, i: int) -> torch.Tensor:
        """``h_i W_i Sigma_i W_i^T`` (d_out x d_out) for input-aware curvature, else ``W_i W_i^T`` (cached)."""
        def make() -> torch.Tensor:
            W, c = self.weight(i), self.curvatures[i]
            return c.scale * (W @ c.covariance() @ W.T) if c.kind == "layerwise" else W @ W.T
        return self._cache.get(("gram", i), make)

    def whitened(self, i: int) -> torch.Tensor:
        """``Z_i = W_i L_i`` (d_out x d_in, cached): the whitened weight, whose Gram ``Z_i^T Z_i`` is the small
        side of a layer wider out than in (gate/up projections)."""
        return self._cache.get(("z", i), lambda: self.weight(i) @ self.root(i))

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
        if i not in self._energies:
            self._energies[i] = 0.5 * self.gram_trace(i) if self.input_aware(i) else \
                self.curvatures[i].quad(self.weight(i))
        return self._energies[i]

    def fits(self, errors: Iterable[float]) -> bool:
        """Whether every member's relative error is inside the trust region."""
        return self.trust_region is None or all(e <= self.trust_region + 1e-12 for e in errors)

    def menu(self, i: int) -> list[int]:
        """The rank menu of layer i's shape."""
        return self._menus[self.shapes[i]]

    def pairs(self, kind: str) -> dict[tuple[int, int], Any]:
        """The exact pair data of one kind (an action's ``pair_kind``) known so far: (a, b), a < b -> data."""
        return self._pairs[kind]

    def _active(self) -> list[Action]:
        """The graph's actions (dense always), in the registry's order."""
        return [a for name, a in REGISTRY.items() if name == "dense" or name in self.actions]

    # ---- each action's shared tensors (the actions' own functions, kept here as the graph's API) -------------
    def tie_center(self, group: Sequence[int]) -> torch.Tensor:
        """The curvature-weighted mean ``argmin_W sum_i quad_i(W - W_i)`` (d_out x d_in, float64)."""
        return tie_center(self, tuple(group))

    def basis(self, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Shared basis U (d_out x rank, orthonormal) and per-layer coefficients C_i = U^T W_i (rank x d_in)."""
        return basis_factors(self, group, rank)

    def basis_option(self, group: Sequence[int], rank: int, trust: bool = True) -> Option | None:
        """The exact cost and memory of a shared basis of any ``rank`` for ``group`` (None if out of the trust
        region, unless ``trust=False``). Used for the baselines' ranks, which need not be on the menu."""
        return basis_option(self, group, rank, trust)

    def input_factors(self, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The shared input factor B (rank x d_in) and each member's A_j (d_out_j x rank), float64."""
        return input_factors(self, group, rank)

    def input_menu(self, group: Sequence[int]) -> list[int]:
        """The rank menu of a shared input factor of ``group``: the menu rule at (sum of d_out, d_in)."""
        return input_menu(self, group)

    def _spectrum(self, group: tuple[int, ...]) -> Spectrum:
        return spectrum(self, group)

    def class_weights(self, members: Sequence[int], action: str, rank: int | None = None,
                      representative: int | None = None) -> list[torch.Tensor]:
        """Each member's weight under one sharing class (float64, d_out x d_in, on the members' device): what
        :func:`~colorshare.torch.apply_coloring` makes the model compute, without changing the model."""
        return get_action(action).weights(self, tuple(members), rank, representative)

    def set_measured(self, members: Sequence[int], action: str, memory: int, cost: float) -> None:
        """Replace the surrogate cost of one option (the class's members, action and parameters stored) by a
        measured one, in the graph's units; solves from then on price that option by it (its bounds too)."""
        group = tuple(sorted(int(i) for i in members))
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"a measured cost must be finite and >= 0, got {cost!r}")
        self._measured[(group, action, int(memory))] = float(cost)
        self.model.forget(group)  # type: ignore[attr-defined]

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
                if (a, b) not in self._pairs[kind]:
                    data = action.pair_data(self, a, b)
                    if data is not None:
                        self._pairs[kind][(a, b)] = data
                computed = computed or (a, b) in self._pairs[kind]
            done += computed
        return done

    def pair_statistics(self, progress: bool = True) -> int:
        """Compute the bound data of every pair of every family (:meth:`refine`), with a progress bar, so that
        solves at any budget prove their answers without spending their time limit on it (``solve`` does it
        lazily otherwise, for the pairs that pricing asks about). Returns how many pairs were done. Measured on
        SmolLM2 (3,045 pairs), 2-core CPU: about 3.5 minutes, two thirds of it the MLP projections."""
        pairs = [(a, b) for m in self.family_members.values() if len(m) > 1 for k, a in enumerate(m) for b in m[k + 1:]
                 if self.can_share(a, b)]
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
        pairs = set.intersection(*(set(self._pairs[k]) for k in kinds))
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
    probe_tokens: int | None = None,
    max_group_size: int | None | str = "auto",
    cross_layer: bool = True,
    progress: bool = True,
) -> ModelGraph:
    """Build the sharing graph of ``model``'s shareable layers from calibration ``batches``.

    Parameters
    ----------
    model : any ``nn.Module``, on any device, or spread over several by accelerate's ``device_map`` (statistics
        stay on each layer's device; a class's shared quantities are computed on its first member's device, and
        ties and medoids, one weight tensor for all members, are offered only to layers on one device); it is not
        modified.
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
        (0..1; None: no limit). Options that break it are left out of the program, so no layer is driven to
        nothing where the second-order model is not valid.
    mix_roles : let same-shaped layers of different roles share (default: a family = one role and shape).
    probe_batches, probe_fraction, probe_tokens : ``probed`` only: the probes run on the first ``probe_batches``
        batches (one forward pass over them per layer, from the layer's block on), each cutting its layer to
        ``probe_fraction`` of its full rank; of transformers batches only the first whole sequences that hold
        ``probe_tokens`` tokens (:func:`~colorshare.torch.replay.first_sequences`; None: the whole batches).
        The graph keeps them as ``probe_set`` (what :func:`~colorshare.torch.measure.solve_measured` measures
        classes on, in the probes' units).
    max_group_size : the largest sharing class of the graph's space; ``"auto"`` (default): 2, Basis Sharing's
        group size, when ``basis`` is an action, else None (ALBERT-style ties need whole families to go below
        half the size); None: up to a whole family. Within it ``solve`` proves its answers on real models: a pair's exact cost
        bounds it exactly, while a class of k > 2 layers is bounded by its pairs only to ``1/(k-1)`` of their
        excess (measured on SmolLM2: about 60 % of a triple's true excess, far less for large classes), which
        leaves 30-layer families without a useful bound.
    cross_layer : let layers of one family (same role and shape, different blocks) share; False: conflict edges
        join every such pair, so the only classes of 2+ layers are the input-side factors of layers fed one input
        (q/k/v, gate/up of a block). Their space is solved and proven in time linear in the layers, with no pair
        statistics (which grow with the square of a family's depth).

    Returns
    -------
    :class:`ModelGraph`: layer sizes are weight parameters; costs are group costs (solve with setpart;
    ``solve`` generates columns for families too large to enumerate).

    Raises
    ------
    ValueError naming the layer whose weight holds NaN or inf, an unknown action or curvature, a pattern
    that matches nothing, or a layer the calibration batches never reach.

    Example
    -------
    >>> g = build_graph(model, batches)                      # doctest: +SKIP
    >>> sol = solve(g, 0.6 * g.dense_size, backend="highs")  # doctest: +SKIP
    """
    bad = set(actions) - set(REGISTRY)
    if bad:
        raise ValueError(f"unknown action(s) {sorted(bad)}; valid: {', '.join(REGISTRY)}")
    trust_region = _check_trust_region(trust_region)
    if max_group_size == "auto":
        max_group_size = DEFAULT_MAX_GROUP_SIZE if "basis" in actions else None
    if max_group_size is not None and (isinstance(max_group_size, bool) or not isinstance(max_group_size, int)
                                       or max_group_size < 1):
        raise ValueError(f"max_group_size must be None or a positive int, got {max_group_size!r}")
    if curvature == "probed":
        if not (isinstance(probe_batches, int) and probe_batches >= 1):
            raise ValueError(f"probe_batches must be a positive int, got {probe_batches!r}")
        if not (isinstance(probe_fraction, (int, float)) and 0 < probe_fraction < 1):
            raise ValueError(f"probe_fraction must be in (0, 1), got {probe_fraction!r}")
        if probe_tokens is not None and not (isinstance(probe_tokens, int) and probe_tokens >= 1):
            raise ValueError(f"probe_tokens must be None or a positive int, got {probe_tokens!r}")
        batches = list(batches)  # iterated twice: statistics, then the probes
    modules = select_modules(model, targets, exclude)
    for n, m in modules.items():
        w = m.weight.detach()
        if w.is_meta:
            raise ValueError(f"layer {n!r} has its weight on the meta device (offloaded by accelerate's device_map to "
                             "'cpu' or 'disk' next to a GPU, or not loaded): colorshare needs every target layer's "
                             "weight on a device; give the model devices for all its blocks (GPUs, or the CPU alone)")
        if not bool(torch.isfinite(w).all()):
            bad_count = int((~torch.isfinite(w)).sum())
            raise ValueError(f"layer {n!r} has {bad_count} NaN or infinite weight value(s); "
                             "colorshare cannot estimate what sharing it costs")
    curv = estimate(model, modules, batches, curvature, loss_fn, probes=probes, k=k, seed=seed, progress=progress)
    names = [n for n in modules if n in curv]
    shapes = [layer_shape(modules[n]) for n in names]
    fams = [f"{shape}" if mix_roles else f"{role_of(n)} {shape}" for n, shape in zip(names, shapes)]
    def rank_rule(s: tuple[int, ...]) -> list[int]:
        d = min(s[0], int(np.prod(s[1:])))
        menu = ranks(s) if callable(ranks) else (ranks if ranks is not None else rank_menu(s))
        return sorted({int(r) for r in menu if 0 < int(r) < d})

    menus = {s: rank_rule(s) for s in set(shapes)}
    sizes = [int(np.prod(s)) for s in shapes]
    conflicts: list[tuple[int, int]] = []
    if not cross_layer:  # no two layers of one family share: only the input scopes' classes are left
        members: dict[str, list[int]] = defaultdict(list)
        for i, f in enumerate(fams):
            members[f].append(i)
        conflicts = [(a, b) for m in members.values() for k, a in enumerate(m) for b in m[k + 1:]]
    g = ModelGraph._empty(sizes, names, fams, conflicts)
    g.module_names = tuple(names)
    g.shapes = tuple(shapes)
    g._params = [modules[n].weight for n in names]
    g._transposed = [is_transposed(modules[n]) for n in names]
    g.curvatures = [curv[n] for n in names]
    g.is_linear = [is_linear(modules[n]) for n in names]
    g.trust_region = trust_region
    g.max_group_size = max_group_size
    g.actions = tuple(actions)
    g._menus = menus
    g.rank_rule = rank_rule
    g._cache = _LRU(512 * 2**20)
    g.spectra = SpectrumCache(4096)
    g._measured = {}
    g.set_scopes([sc for a in g._active() if a.scope != "shape" for sc in a.scopes(g)])
    g._reset()
    g.probe_ratios = None
    g.probe_set = None
    if curvature == "probed":
        from .probe import probe_scales
        from .replay import first_sequences

        g.probe_set = first_sequences(batches[:probe_batches], probe_tokens)
        ratios = probe_scales(g, {n: modules[n] for n in names}, model, g.probe_set, loss_fn, probe_fraction,
                              progress)
        g._rescale(ratios)  # what the probes computed for one layer scales with its ratio: kept, not recomputed
        g.probe_ratios = ratios
    return g


def precompute(graph: ModelGraph, groups: Iterable[tuple[int, ...]], progress: bool = True) -> None:
    """Evaluate the options of ``groups`` now, with a progress bar (the solver would otherwise do it lazily)."""
    groups = list(groups)
    for grp in tqdm(groups, desc="group costs", leave=False, disable=not progress):
        graph.options(grp)
    if not groups:
        warnings.warn("no groups to precompute", RuntimeWarning, stacklevel=2)
