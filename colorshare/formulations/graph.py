"""The sharing graph: layers (nodes), families, sizes, conflict edges and a cost model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .costs import CostModel, GroupCosts, MedoidCosts, Option, PairwiseCosts

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = ["SharingGraph", "SharingClass"]


@dataclass(frozen=True)
class SharingClass:
    """One sharing class of a solution: its members (layer indices), action, exact cost and memory (parameters)."""

    members: tuple[int, ...]
    action: str
    cost: float
    memory: int
    representative: int | None = None
    params: Mapping[str, Any] | None = None


def _check_sizes(sizes: Any, n: int) -> np.ndarray:
    if sizes is None:
        return np.ones(n, dtype=np.int64)
    try:
        raw = np.asarray(sizes)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read
        raise ValueError(f"sizes must be a sequence of {n} positive integers: {exc}") from None
    if raw.ndim != 1 or len(raw) != n:
        raise ValueError(f"sizes must be a sequence of {n} positive integers, got shape {raw.shape}")
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(f"sizes must be integers (parameters per layer), got dtype {raw.dtype}")
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
        i = int(np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))[0])
        raise ValueError(f"sizes[{i}] = {raw[i]} is not a whole number of parameters")
    out = raw.astype(np.int64)
    if (out <= 0).any():
        i = int(np.flatnonzero(out <= 0)[0])
        raise ValueError(f"sizes[{i}] = {out[i]}; every layer must have a size > 0 (parameters)")
    return out


def _check_names(names: Sequence[str] | None, n: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"layer{i}" for i in range(n))
    names = tuple(str(x) for x in names)
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries but the graph has {n} layers")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"duplicate layer name {name!r} (layers {seen[name]} and {i})")
        seen[name] = i
    return names


def _check_conflicts(conflicts: Iterable[Any], n: int, names: tuple[str, ...]) -> frozenset[tuple[int, int]]:
    index = {name: i for i, name in enumerate(names)}
    out: set[tuple[int, int]] = set()
    for pair in conflicts:
        try:
            u, v = pair
        except (TypeError, ValueError):
            raise ValueError(f"conflict {pair!r} must be a pair of layers") from None
        ends = []
        for x in (u, v):
            if isinstance(x, str):
                if x not in index:
                    raise ValueError(f"conflict {pair!r} names unknown layer {x!r}")
                ends.append(index[x])
            elif isinstance(x, (int, np.integer)) and not isinstance(x, bool):
                if not 0 <= int(x) < n:
                    raise ValueError(f"conflict {pair!r} names unknown layer {x} (layers are 0..{n - 1})")
                ends.append(int(x))
            else:
                raise ValueError(f"conflict {pair!r}: a layer must be an index or a name, got {x!r}")
        if ends[0] == ends[1]:
            raise ValueError(f"conflict {pair!r} joins a layer to itself")
        out.add((min(ends), max(ends)))
    return frozenset(out)


class SharingGraph:
    """Layers that may share parameters: sizes (parameters), families, conflicts and a cost model.

    Two layers may share only if they are in the same family (same shape signature; by default the same size)
    and no conflict edge joins them. Build one with :meth:`from_matrix`, :meth:`from_pairwise`,
    :meth:`from_groups` or :meth:`from_networkx`.
    """

    _unit: str = "parameters"

    @property
    def unit(self) -> str:
        """What :attr:`sizes`, every option's memory and a budget count: ``"parameters"``, or ``"bytes"`` (a model
        graph built with bit-widths: codes, scales and zero points included)."""
        return self._unit

    max_group_size: int | None = None
    """The largest class within one family of the graph's space (None: a whole family). ``solve`` searches that
    space unless its ``max_group_size`` or ``groups`` option says otherwise; a model's graph sets 2 (see
    ``build_graph``). Scope groups (:attr:`scopes`) are not limited by it, except that 1 means no sharing."""

    scopes: tuple[tuple[int, ...], ...] = ()
    """Sharing scopes across families: sorted member sets (layers fed the same input tensor, in a model's
    graph) any of whose subsets of 2+ conflict-free members may form one class, with the actions the cost
    model gives it (a shared input-side factor). Families are the other scopes: same shape, any subset."""

    _scope_of: dict[int, set[int]] = {}  # layer -> the scopes it is in (set by set_scopes)

    def set_scopes(self, scopes: Iterable[Iterable[int]]) -> None:
        """Declare :attr:`scopes` (each of 2+ distinct layers); ValueError naming a bad one."""
        out = []
        for sc in scopes:
            t = tuple(sorted({int(i) for i in sc}))
            if len(t) < 2 or any(not 0 <= i < self.n for i in t):
                raise ValueError(f"scope {sc!r} needs 2+ layers among 0..{self.n - 1}")
            out.append(t)
        self.scopes = tuple(out)
        self._scope_of = {}
        for k, t in enumerate(self.scopes):
            for i in t:
                self._scope_of.setdefault(i, set()).add(k)

    def scopes_of(self, i: int) -> set[int]:
        """The indices (into :attr:`scopes`) of the scopes layer ``i`` is in."""
        return set(self._scope_of.get(i, set()))

    def in_scope(self, group: Iterable[int]) -> bool:
        """True if ``group`` (2+ layers, no conflict among them) lies within one declared scope."""
        g = list(group)
        if len(g) < 2 or not self.scopes:
            return False
        common = set.intersection(*(self._scope_of.get(i, set()) for i in g))
        return bool(common) and all(b not in self._conflict_adj[a] for k, a in enumerate(g) for b in g[k + 1:])

    def scope_groups(self) -> list[tuple[int, ...]]:
        """Every group a scope allows (its subsets of 2+ conflict-free members, each once, sorted)."""
        from itertools import combinations

        out: dict[tuple[int, ...], None] = {}
        for sc in self.scopes:
            for k in range(2, len(sc) + 1):
                for grp in combinations(sc, k):
                    if self.in_scope(grp):
                        out[grp] = None
        return list(out)

    def __init__(
        self,
        cost_model: CostModel,
        sizes: Any = None,
        conflicts: Iterable[Any] = (),
        names: Sequence[str] | None = None,
        families: Sequence[Any] | None = None,
        n: int | None = None,
    ) -> None:
        if n is None:
            matrix = getattr(cost_model, "matrix", None)
            if matrix is None:
                raise ValueError("n (number of layers) is required for this cost model")
            n = int(matrix.shape[0])  # MedoidCosts / PairwiseCosts
        if n < 1:
            raise ValueError("a sharing graph needs at least one layer")
        self.n: int = int(n)
        self.cost_model: CostModel = cost_model
        """What each class costs and stores (:mod:`colorshare.formulations.costs`)."""
        self.sizes = _check_sizes(sizes, self.n)
        self.sizes.setflags(write=False)
        self.names = _check_names(names, self.n)
        self.conflicts = _check_conflicts(conflicts, self.n, self.names)
        if families is None:
            fam = [f"size={s}" for s in self.sizes]
        else:
            fam = [str(f) for f in families]
            if len(fam) != self.n:
                raise ValueError(f"families has {len(fam)} entries but the graph has {self.n} layers")
        self.families: tuple[str, ...] = tuple(fam)
        members: dict[str, list[int]] = {}
        for i, f in enumerate(self.families):
            members.setdefault(f, []).append(i)
        for f, idx in members.items():
            s = {int(self.sizes[i]) for i in idx}
            if len(s) > 1:
                raise ValueError(f"family {f!r} mixes layer sizes {sorted(s)}; layers of different sizes never share")
        self.family_members: dict[str, tuple[int, ...]] = {f: tuple(v) for f, v in members.items()}
        self._family_index = {f: k for k, f in enumerate(self.family_members)}
        self._conflict_adj: list[set[int]] = [set() for _ in range(self.n)]
        for u, v in self.conflicts:
            self._conflict_adj[u].add(v)
            self._conflict_adj[v].add(u)

    # ---- constructors -------------------------------------------------------------------------------------
    @classmethod
    def from_matrix(
        cls,
        cost: Any,
        sizes: Any = None,
        conflicts: Iterable[Any] = (),
        names: Sequence[str] | None = None,
        families: Sequence[Any] | None = None,
    ) -> SharingGraph:
        """Medoid costs: ``cost[i][j]`` >= 0 is the loss when layer ``i`` is served by layer ``j``'s parameters.

        Parameters
        ----------
        cost : n x n array-like, finite, >= 0, zero diagonal. Entries between layers that may not share are ignored.
        sizes : parameters of each layer (default 1 each). Layers of different sizes never share.
        conflicts : pairs ``(i, j)`` (indices or names) that may never share.
        names : distinct layer names (default ``layer0..``).
        families : optional family label per layer (default: one family per size).

        Raises
        ------
        ValueError naming the bad entry (NaN, inf, negative, non-square, bad size, unknown conflict, ...).

        Example
        -------
        >>> g = SharingGraph.from_matrix([[0, 1], [2, 0]], sizes=[10, 10])
        >>> g.dense_size
        20
        """
        return cls(MedoidCosts(cost), sizes, conflicts, names, families)

    @classmethod
    def from_pairwise(
        cls,
        weights: Any,
        sizes: Any = None,
        conflicts: Iterable[Any] = (),
        names: Sequence[str] | None = None,
        families: Sequence[Any] | None = None,
    ) -> SharingGraph:
        """Pairwise-additive costs: a class costs the sum of ``weights[i][j]`` over its pairs (symmetric, >= 0).

        >>> SharingGraph.from_pairwise([[0, 1], [1, 0]]).n
        2
        """
        return cls(PairwiseCosts(weights), sizes, conflicts, names, families)

    @classmethod
    def from_groups(
        cls,
        costs: Mapping[tuple[int, ...], Iterable[Any]] | Callable[[tuple[int, ...]], Iterable[Any]],
        sizes: Any,
        conflicts: Iterable[Any] = (),
        names: Sequence[str] | None = None,
        families: Sequence[Any] | None = None,
        bounds: Callable[[tuple[int, ...]], Any] | None = None,
    ) -> SharingGraph:
        """Group costs: exact cost and memory (parameters) of each (group, action).

        ``costs`` is a table ``{(i, j, ...): [(action, cost, memory[, params]), ...]}`` or an oracle
        ``costs(group) -> [(action, cost, memory[, params]), ...]`` called with sorted index tuples of
        same-family, conflict-free layers. Singletons must be listed too (usually a ``("dense", 0.0, size)``).
        ``bounds(family) -> FamilyBound`` (:mod:`colorshare.formulations.bounds`, sorted member indices): lower
        bounds on every group of the family; they let ``solve`` generate columns, with a proven bound, over
        families too large to enumerate (with a table: groups it does not list exist, priced by the bounds).

        >>> g = SharingGraph.from_groups({(0,): [("dense", 0.0, 4)], (1,): [("dense", 0.0, 4)],
        ...                               (0, 1): [("tie", 0.5, 4)]}, sizes=[4, 4])
        >>> g.options((0, 1))[0].action
        'tie'
        """
        sz = _check_sizes(sizes, len(sizes) if hasattr(sizes, "__len__") else -1)
        return cls(GroupCosts(costs, bounds=bounds), sz, conflicts, names, families, n=len(sz))

    @classmethod
    def from_networkx(
        cls, graph: nx.Graph, cost: str = "cost", size: str = "size", family: str = "family", conflict: str = "conflict"
    ) -> SharingGraph:
        """Read a graph written by :meth:`to_networkx` (or built by hand).

        Nodes (in iteration order) are layers, with optional ``size`` and ``family`` attributes. A directed
        edge ``i -> j`` with attribute ``cost`` gives ``cost[i][j]`` (undirected edges give both directions).
        An edge with ``conflict=True`` is a conflict. A same-family pair without a cost is an error.
        """
        nodes = list(graph.nodes)
        index = {v: k for k, v in enumerate(nodes)}
        n = len(nodes)
        sizes = [graph.nodes[v].get(size, 1) for v in nodes]
        fams = [graph.nodes[v].get(family, f"size={s}") for v, s in zip(nodes, sizes)]
        mat = np.zeros((n, n))
        have = np.eye(n, dtype=bool)
        conflicts = []
        directed = graph.is_directed()
        for u, v, data in graph.edges(data=True):
            i, j = index[u], index[v]
            if data.get(conflict, False):
                conflicts.append((i, j))
            if cost in data:
                mat[i, j] = data[cost]
                have[i, j] = True
                if not directed:
                    mat[j, i] = data[cost]
                    have[j, i] = True
        g = cls.from_matrix(mat, sizes, conflicts, [str(v) for v in nodes], fams)
        for i in range(n):
            for j in range(n):
                if not have[i, j] and g.can_share(i, j):
                    raise ValueError(f"no {cost!r} on edge {nodes[i]!r} -> {nodes[j]!r}, which may share")
        return g

    def to_networkx(self) -> nx.DiGraph:
        """A networkx DiGraph: nodes = layer names with ``size``/``family``; ``cost`` edges; ``conflict`` edges."""
        import networkx as nx

        G = nx.DiGraph()
        for i, name in enumerate(self.names):
            G.add_node(name, size=int(self.sizes[i]), family=self.families[i])
        matrix = getattr(self.cost_model, "matrix", None)
        for i in range(self.n):
            for j in range(self.n):
                if i != j and self.can_share(i, j) and matrix is not None:
                    G.add_edge(self.names[i], self.names[j], cost=float(matrix[i, j]))
        for u, v in self.conflicts:
            G.add_edge(self.names[u], self.names[v], conflict=True)
        return G

    # ---- queries --------------------------------------------------------------------------------------------
    @property
    def dense_size(self) -> int:
        """Memory of the graph's layers before any sharing, in :attr:`unit` (parameters, or 16-bit bytes)."""
        return int(self.sizes.sum())

    @property
    def dense_parameters(self) -> int:
        """Weights of the graph's layers (equal to :attr:`dense_size` when it counts parameters)."""
        return self.dense_size

    @property
    def kind(self) -> str:
        """The cost model: ``"medoid"``, ``"pairwise"`` or ``"group"``."""
        return self.cost_model.kind

    def family_of(self, i: int) -> str:
        return self.families[i]

    def conflicts_of(self, i: int) -> set[int]:
        return self._conflict_adj[i]

    def can_share(self, i: int, j: int) -> bool:
        """True if layers ``i`` and ``j`` are distinct, in one family and not in conflict."""
        return i != j and self.families[i] == self.families[j] and j not in self._conflict_adj[i]

    def is_group(self, group: Iterable[int]) -> bool:
        """True if ``group`` may form one class: every pair may share (one family, no conflict), or it lies
        within one scope (:attr:`scopes`)."""
        g = list(group)
        return all(self.can_share(a, b) for k, a in enumerate(g) for b in g[k + 1 :]) or self.in_scope(g)

    @property
    def cost_matrix(self) -> np.ndarray:
        """The n x n cost matrix (read-only) of medoid costs (``[i, j]``: i served by j) or pairwise weights;
        ValueError for group costs, which have none."""
        matrix = getattr(self.cost_model, "matrix", None)
        if matrix is None:
            raise ValueError(f"this graph has {self.kind} costs: there is no cost matrix")
        return matrix

    def first_conflict(self, group: Iterable[int]) -> tuple[int, int] | None:
        """The first pair of ``group`` that may not share (other family or a conflict edge), or None."""
        g = list(group)
        if self.in_scope(g):
            return None
        return next(((a, b) for k, a in enumerate(g) for b in g[k + 1 :] if not self.can_share(a, b)), None)

    def resolve(self, group: Iterable[int], action: str, memory: int | None = None) -> Option | None:
        """The option of ``group`` with ``action`` storing exactly ``memory`` parameters (the cheapest such),
        else the cheapest with that action storing at most ``memory``; None if there is none."""
        opts = [o for o in self.options(group) if o.action == action]
        exact = [o for o in opts if memory is None or o.memory == memory]
        if not exact:
            exact = [o for o in opts if memory is not None and o.memory <= memory]
        return min(exact, key=lambda o: o.cost, default=None)

    def options(self, group: Iterable[int]) -> list[Option]:
        """Actions available to ``group`` (empty if the group may not form)."""
        g = tuple(sorted(int(i) for i in group))
        if len(g) == 0 or (len(g) > 1 and not self.is_group(g)):
            return []
        return self.cost_model.options(g, int(self.sizes[g[0]]))

    def best_option(self, group: Iterable[int], action: str | None = None, memory: int | None = None) -> Option | None:
        """Cheapest option of ``group``, optionally with a given action and at most ``memory`` parameters."""
        best = None
        for o in self.options(group):
            if action is not None and o.action != action:
                continue
            if memory is not None and o.memory > memory:
                continue
            if best is None or o.cost < best.cost:
                best = o
        return best

    def min_memory(self) -> int:
        """A lower bound on the parameters any valid coloring stores (one layer per family, for matrix models)."""
        if self.kind == "group":
            return 0
        return int(sum(int(self.sizes[m[0]]) for m in self.family_members.values()))

    def colors_to_classes(self, colors: Sequence[int]) -> list[tuple[int, ...]]:
        """Group layer indices by color, classes ordered by their first member."""
        if len(colors) != self.n:
            raise ValueError(f"colors has {len(colors)} entries but the graph has {self.n} layers")
        groups: dict[Any, list[int]] = {}
        for i, c in enumerate(colors):
            groups.setdefault(c, []).append(i)
        return sorted((tuple(v) for v in groups.values()), key=lambda t: t[0])

    def __repr__(self) -> str:
        return (
            f"SharingGraph(n={self.n}, families={len(self.family_members)}, conflicts={len(self.conflicts)}, "
            f"costs={self.kind!r}, dense_size={self.dense_size})"
        )
