"""Instances: synthetic graphs with planted structure, and readers for the public benchmark formats.

numpy only. The LLaMA-7B-shaped graph is the demo's default: 32 layers x 7 roles (q, k, v, o, gate, up,
down), real per-role parameter counts, and medoid costs from a planted block structure (runs of adjacent
layers with similar weights, per-layer curvature), so the optimum is neither "adjacent pairs" nor "all".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .formulations.graph import SharingGraph

__all__ = ["planted_graph", "llama_graph", "read_dimacs", "read_pmedian", "LLAMA7B_ROLES"]

LLAMA7B_ROLES: dict[str, tuple[int, int]] = {
    "q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
    "gate_proj": (11008, 4096), "up_proj": (11008, 4096), "down_proj": (4096, 11008),
}


def planted_graph(
    layers: int = 32,
    roles: dict[str, tuple[int, int]] | None = None,
    seed: int = 0,
    dim: int = 8,
    block: int = 4,
    noise: float = 0.35,
) -> SharingGraph:
    """A medoid graph: ``layers`` per role, each role a family with size = rows x cols parameters.

    Within a role, layer weights are points ``w_l`` in R^dim that drift block by block (runs of ``block``
    adjacent layers share a center, plus ``noise``); each layer has a curvature ``h_l`` (log-normal), and
    ``cost[i][j] = h_i * ||w_j - w_i||^2 / 2`` (the loss when i is served by j's weights).
    """
    roles = LLAMA7B_ROLES if roles is None else roles
    rng = np.random.default_rng(seed)
    names, sizes, fams, blocks = [], [], [], []
    for role, (r, c) in roles.items():
        nblocks = -(-layers // block)
        centers = np.cumsum(rng.normal(size=(nblocks, dim)), axis=0)
        lens = rng.integers(max(1, block - 2), block + 3, size=layers)  # uneven runs
        starts = np.minimum(np.cumsum(lens) - lens, layers)
        which = np.searchsorted(starts, np.arange(layers), side="right") - 1
        w = centers[np.minimum(which, nblocks - 1)] + noise * rng.normal(size=(layers, dim))
        h = rng.lognormal(0.0, 0.5, size=layers)
        blocks.append(0.5 * h[:, None] * ((w[None, :, :] - w[:, None, :]) ** 2).sum(-1))
        for layer in range(layers):
            names.append(f"layers.{layer}.{role}")
            sizes.append(r * c)
            fams.append(role)
    n = len(names)
    cost = np.zeros((n, n))
    for k, b in enumerate(blocks):
        s = slice(k * layers, (k + 1) * layers)
        cost[s, s] = b
    return SharingGraph.from_matrix(cost, sizes=sizes, names=names, families=fams)


def llama_graph(seed: int = 0) -> SharingGraph:
    """The demo graph: LLaMA-7B shaped, 32 layers x 7 families = 224 layers, planted structure."""
    return planted_graph(32, LLAMA7B_ROLES, seed=seed)


def read_dimacs(path: str | Path) -> tuple[int, list[tuple[int, int]]]:
    """A DIMACS ``.col`` file: (n, undirected edges as 0-based pairs, duplicates removed)."""
    n = None
    edges: set[tuple[int, int]] = set()
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "p":
            n = int(parts[2])
        elif parts[0] == "e":
            u, v = int(parts[1]) - 1, int(parts[2]) - 1
            if u != v:
                edges.add((min(u, v), max(u, v)))
    if n is None:
        raise ValueError(f"{path}: no 'p edge n m' line")
    return n, sorted(edges)


def read_pmedian(path: str | Path) -> tuple[np.ndarray, int]:
    """An OR-Library p-median file: (all-pairs shortest-path distance matrix, p).

    The LAST occurrence of a duplicated edge counts (OR-Library convention); distances are then
    all-pairs shortest paths (scipy's Floyd-Warshall).
    """
    from scipy.sparse.csgraph import floyd_warshall

    lines = Path(path).read_text().split("\n")
    n, m, p = (int(x) for x in lines[0].split()[:3])
    w = np.full((n, n), np.inf)
    np.fill_diagonal(w, 0.0)
    for line in lines[1 : m + 1]:
        parts = line.split()
        if len(parts) < 3:
            continue
        i, j, c = int(parts[0]) - 1, int(parts[1]) - 1, float(parts[2])
        w[i, j] = w[j, i] = c
    return floyd_warshall(w, directed=False), p
