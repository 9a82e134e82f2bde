"""What a sharing action is: one object per action, behind one interface, registered once.

A :class:`~colorshare.torch.model_graph.ModelGraph` asks its actions for the options of a group (cost, memory,
parameters), for an option named by (members, memory) (:meth:`Action.class_option`), for the weights a class
makes its members compute, and for lower bounds on every option of a family's groups; ``apply_coloring``
asks them to build the class in a model, and ``save_shared`` / ``load_shared`` to write and rebuild the
modules they build. Adding an action is one module in this package (peft's one file per tuner).

An action reads the graph through :class:`GraphStatistics` only (the model graph implements it; a test checks
that it does), never through the graph's class.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ...formulations.bounds import KindBound
from ...formulations.costs import Option

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass
    from ..curvature import Curvature
    from ..quant import Quantized

__all__ = ["Action", "GraphStatistics", "SharedLinear", "Spectrum", "SpectrumCache", "tails", "parent_of", "SAFE"]

SAFE = 1 - 1e-9
"""Pair excesses in bounds are shrunk by this factor: eigenvalues and tie centres carry float64 rounding."""


@dataclass
class Spectrum:
    """A group's whitened spectrum: eigenvalues (descending, CPU float64) and each member's relative error
    per rank (``rel_err[k, r]`` = discarded fraction of member k's whitened energy at rank r)."""

    vals: np.ndarray
    rel_err: np.ndarray


class SpectrumCache:
    """Spectra by key, the least recently used dropped beyond ``max_items`` (they are small: host arrays)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.data: OrderedDict[Any, Spectrum] = OrderedDict()

    def get(self, key: Any) -> Spectrum | None:
        hit = self.data.get(key)
        if hit is not None:
            self.data.move_to_end(key)
        return hit

    def put(self, key: Any, spec: Spectrum) -> None:
        self.data[key] = spec
        while len(self.data) > self.max_items:
            self.data.popitem(last=False)


@runtime_checkable
class GraphStatistics(Protocol):
    """What an action may read of a model's sharing graph: the layers' shapes, weights and curvature, the
    whitened quantities derived from them (float64, on each layer's device), the graph's caches and its exact
    pair data. Group indices are layer indices, sorted."""

    n: int
    names: tuple[str, ...]
    sizes: np.ndarray
    families: tuple[str, ...]
    trust_region: float | None

    @property
    def module_names(self) -> tuple[str, ...]: ...

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's weight shape, (d_out, d_in) for a linear layer."""
        ...

    @property
    def curvatures(self) -> list[Curvature]: ...

    @property
    def is_linear(self) -> list[bool]: ...

    @property
    def actions(self) -> tuple[str, ...]: ...

    @property
    def spectra(self) -> SpectrumCache: ...

    def rank_rule(self, shape: tuple[int, ...]) -> list[int]:
        """The rank menu of a d_out x d_in matrix (ranks in 1 .. min(d_out, d_in) - 1)."""
        ...

    def weight(self, i: int, device: torch.device | None = None) -> torch.Tensor:
        """Layer i's weight as a float64 d_out x d_in matrix on ``device`` (default: the layer's own)."""
        ...

    def to_layout(self, i: int, W: torch.Tensor) -> torch.Tensor:
        """A d_out x d_in matrix in layer i's own weight layout, device and dtype."""
        ...

    def device_of(self, i: int) -> torch.device: ...

    def home(self, group: Sequence[int]) -> torch.device:
        """Where a class's shared quantities are computed and kept: its first member's device."""
        ...

    def spans_devices(self, group: Sequence[int]) -> bool: ...

    def input_aware(self, i: int) -> bool:
        """Whether layer i's curvature is ``h_i (I x Sigma_i)`` (kfac, layerwise, probed)."""
        ...

    def sigma_root(self, i: int) -> torch.Tensor:
        """``R`` with ``Sigma_i = R R^T`` (the input covariance's root)."""
        ...

    def whitened(self, i: int) -> torch.Tensor:
        """``W_i L_i`` with ``h_i Sigma_i = L_i L_i^T`` (d_out x d_in)."""
        ...

    def gram(self, i: int) -> torch.Tensor:
        """``h_i W_i Sigma_i W_i^T`` (d_out x d_out) for input-aware curvature, else ``W_i W_i^T``."""
        ...

    def gram_trace(self, i: int) -> float: ...

    def energy(self, i: int) -> float:
        """The surrogate of removing layer i entirely (the trust region's denominator)."""
        ...

    def fits(self, errors: Iterable[float]) -> bool:
        """Whether every member's relative error is inside the trust region."""
        ...

    def menu(self, i: int) -> list[int]:
        """The rank menu of layer i's shape."""
        ...

    def in_scope(self, group: Iterable[int]) -> bool: ...

    def cached(self, key: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A tensor from the graph's byte-bounded cache, made by ``make()`` when absent."""
        ...

    def pairs(self, kind: str) -> dict[tuple[int, int], Any]:
        """The exact pair data of one kind known so far: (a, b), a < b -> data."""
        ...

    @property
    def measured(self) -> dict[tuple[tuple[int, ...], str, int], float]:
        """Options priced by measurement: (members, action, memory) -> cost."""
        ...

    @property
    def bits_menu(self) -> tuple[int, ...]:
        """The bit-widths a stored tensor may take (16: as it is)."""
        ...

    @property
    def per_value(self) -> int:
        """Memory units of one 16-bit value: 1 (the graph counts parameters) or 2 (bytes)."""
        ...

    def memory(self, rows: int, cols: int, bits: int = 16) -> int:
        """What a rows x cols tensor stored in ``bits`` takes, in the graph's unit."""
        ...

    def quant_cost(self, i: int, bits: int) -> float:
        """The surrogate cost of storing layer i's weight in ``bits``."""
        ...

    def quantize(self, i: int, bits: int) -> Quantized:
        """Layer i's weight quantized to ``bits``."""
        ...


def tails(vals: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """Half the sum of the eigenvalues beyond each rank (``vals`` descending): a rank-r factorization's cost."""
    tail = np.concatenate([np.cumsum(vals[::-1])[::-1], [0.0]])
    return 0.5 * tail[np.minimum(np.asarray(ranks, dtype=int), len(vals))]


def relative_errors(proj: torch.Tensor, tot: torch.Tensor, width: int) -> torch.Tensor:
    """Each member's discarded fraction of its energy at every rank 0..width (members x width+1), from its
    captured energy per direction ``proj`` (members x m, m <= width) and its total ``tot`` (members)."""
    captured = torch.zeros(proj.shape[0], width + 1, dtype=torch.float64, device=proj.device)
    captured[:, 1:proj.shape[1] + 1] = proj.double().cumsum(1)
    captured[:, proj.shape[1] + 1:] = captured[:, proj.shape[1]:proj.shape[1] + 1]
    t = tot.double()[:, None]
    return torch.where(t > 0, (1.0 - captured / t.clamp(min=1e-300)).clamp(0.0, 1.0), torch.zeros_like(captured))


def host_spectrum(vals: torch.Tensor, rel: torch.Tensor) -> Spectrum:
    """A :class:`Spectrum` on the host from eigenvalues and relative errors (members x width+1, width =
    ``len(vals)``) computed on the statistics' device: one transfer for both."""
    width = len(vals)
    packed = torch.cat([torch.cat([vals.double(), vals.new_zeros(1, dtype=torch.float64)])[None], rel.double()])
    host = packed.cpu().numpy()
    return Spectrum(host[0, :width].copy(), host[1:].copy())


def parent_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule (or parameter) ``name``, and the attribute name under it."""
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


class SharedLinear(nn.Module):
    """A linear layer whose weight is a product of two factors, one of them shared across its class."""

    in_features: int
    out_features: int
    bias: nn.Parameter | None

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factors (d_out x r, r x d_in) whose product is the weight."""
        raise NotImplementedError

    def _set_bias(self, bias: nn.Parameter | None) -> None:
        """Register ``bias`` (after the factors) and the layer's sizes, read from the factors."""
        self.bias = bias
        left, right = self.factors()
        self.in_features, self.out_features = right.shape[1], left.shape[0]

    @property
    def rank(self) -> int:
        return self.factors()[1].shape[0]

    @property
    def weight(self) -> torch.Tensor:
        left, right = self.factors()
        return left @ right

    def to_linear(self) -> nn.Linear:
        """An ``nn.Linear`` with this layer's weight (a copy) and its bias (the same parameter)."""
        w = self.weight
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
        if self.bias is not None:
            lin.bias = self.bias
        return lin


class Action:
    """One kind of sharing class: what it costs, stores and bounds on a model graph, what it builds in a model,
    and how that is saved and rebuilt. Subclasses set the class attributes and override what applies."""

    name: ClassVar[str]
    scope: ClassVar[str] = "shape"
    """Who may form its classes: ``"shape"`` (layers of one family: same shape and role) or ``"input"`` (layers
    of one input scope: fed the very same tensor)."""
    layer: ClassVar[type[nn.Module] | None] = None
    """The module it puts in place of each member (None: members keep their modules, parameters re-tied)."""
    pair_kind: ClassVar[str | None] = None
    """The key of the exact pair data its bounds read (``graph.pairs(pair_kind)``), if any."""
    needs_rank: ClassVar[bool] = False
    plan_fields: ClassVar[tuple[frozenset[str], frozenset[str]]] = (frozenset({"in", "out", "rank"}),
                                                                    frozenset({"bias"}))
    """(required, optional) fields of its :meth:`plan_entry` (checked when a file is read)."""

    def scopes(self, g: GraphStatistics) -> list[tuple[int, ...]]:
        """The member sets this action may form classes in, for an action whose scope is not ``"shape"``."""
        return []

    # ---- costs and memory ---------------------------------------------------------------------------------
    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        """The options of ``group`` (sorted members within this action's scope), inside the trust region."""
        return []

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        """The exact option of the class (members, this action, ``memory`` parameters stored), None if there is
        none; with ``trust=False`` also outside the trust region."""
        return None

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        """Each member's weight under the class (float64, d_out x d_in, on the members' device); ``bits``: the
        bit-width its stored tensors take."""
        raise NotImplementedError

    def rank_of(self, rank: int | None) -> int:
        if rank is None:
            raise ValueError(f"a {self.name} class needs its rank")
        return int(rank)

    # ---- bounds for generated columns ---------------------------------------------------------------------
    def reads_pairs(self, g: GraphStatistics, family: tuple[int, ...]) -> bool:
        """Whether this action's bounds for ``family`` read exact pair data (``graph.pairs(pair_kind)``)."""
        return False

    def pair_data(self, g: GraphStatistics, a: int, b: int) -> Any:
        """The exact pair data of (a, b), a < b, by the cheapest exact path; None where there is none (the pair's
        options record it when they are evaluated)."""
        return None

    def bounds(self, g: GraphStatistics, family: tuple[int, ...], pos: dict[int, int]) -> list[KindBound] | None:
        """Lower bounds on this action's options of every group (2+ members) of ``family`` (``pos``: member ->
        position); None when no bound is known (the family's columns are then not generated)."""
        return []

    @staticmethod
    def measured_pairs(g: GraphStatistics, actions: Sequence[str],
                       pos: dict[int, int]) -> list[tuple[int, int, int, float]]:
        """The measured pairs of the family among ``actions``: (position a, position b, memory, cost)."""
        return [(pos[grp[0]], pos[grp[1]], mem, cost) for (grp, action, mem), cost in g.measured.items()
                if len(grp) == 2 and action in actions and grp[0] in pos and grp[1] in pos]

    # ---- in a model ---------------------------------------------------------------------------------------
    def check_placement(self, g: GraphStatistics, cl: SharingClass, mods: dict[str, nn.Module]) -> None:
        """ValueError naming the class if it cannot be built where its members sit (``mods``: the model's
        modules by name; a model spread over devices). Default: any placement works (shared factors are kept on
        the first member's device and follow the input)."""

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        """Make ``target`` (whose modules by name are ``mods``) compute the class ``cl``."""
        raise NotImplementedError

    def apply_float(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                    mods: dict[str, nn.Module]) -> None:
        """:meth:`apply` with every stored tensor kept in 16 bits (to be healed, then :meth:`requantize` d)."""
        self.apply(g, cl, target, mods)

    def requantize(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                   mods: dict[str, nn.Module]) -> None:
        """Round the class ``apply_float`` built to its bit-width, from the tensors ``target`` holds now."""

    def plan_entry(self, module: nn.Module) -> dict[str, Any]:
        """What :meth:`rebuild` needs to put an empty copy of ``module`` in place (JSON-able)."""
        assert isinstance(module, SharedLinear)
        return {"in": module.in_features, "out": module.out_features, "rank": module.rank,
                "bias": module.bias is not None}

    def rebuild(self, spec: dict[str, Any], old: nn.Module, name: str, source: str) -> nn.Module:
        """An empty module of this action's layer in place of ``old`` (module ``name``), from its plan entry,
        with ``old``'s dtype, device and bias; ValueError if ``old`` has another shape."""
        from ..targets import bias_of, layer_shape

        w = getattr(old, "weight", None)
        shape = None if not isinstance(w, torch.Tensor) else layer_shape(old)
        if w is None or shape != (spec["out"], spec["in"]):
            raise ValueError(f"layer {name!r} is {spec['out']} x {spec['in']} in {source} but "
                             f"{shape} in this model: is it the same architecture?")
        return self.empty_layer(spec, w.dtype, w.device, bias_of(old))

    def empty_layer(self, spec: dict[str, Any], dtype: torch.dtype, device: Any,
                    bias: nn.Parameter | None) -> SharedLinear:
        raise NotImplementedError
