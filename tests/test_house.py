"""The package's shape: no import cycle, imports point down the layers, no function over 100 lines, and the
registries and contracts hold (read from the source with ast: nothing is imported to check it)."""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "colorshare"
LAYERS = ("formulations", "solvers", "torch", "bench")
"""Bottom to top; a module may import its own layer and the ones below (root modules: validation, defaults,
timing, instance files, ... sit below the layers; cli, compress and report above the torch adapter)."""


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (function bodies included), except under
    ``if TYPE_CHECKING:``; ``from . import x`` counts as importing ``x`` only."""
    tree = ast.parse(path.read_text())
    skip = {id(s) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
            for s in ast.walk(n)}
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name in mods}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                pkg = base[:len(base) - (n.level - 1)]
                mod = ".".join(pkg + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            for a in n.names:
                sub = f"{mod}.{a.name}"
                target = sub if sub in mods else mod
                if target in mods and target != name:
                    out.add(target)
    return out


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        g.add_edges_from((name, t) for t in _imports(name, path, mods))
    return g


def test_no_import_cycle(graph):
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_imports_point_down_the_layers(graph):
    up = [(a, b) for a, b in graph.edges
          if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert not up, f"imports that point up a layer: {up}"
    # the root's utilities stay at the bottom: they import no layer
    for low in ("colorshare.validation", "colorshare.defaults", "colorshare.timing"):
        assert not [b for b in graph.successors(low) if _layer(b) is not None], low


def test_the_torch_free_core_never_reaches_the_adapter(graph):
    core = [m for m in graph if _layer(m) in (0, 1)] + ["colorshare"]
    reach = set().union(*(nx.descendants(graph, m) for m in core))
    assert not [m for m in reach if _layer(m) is not None and _layer(m) >= LAYERS.index("torch")]


def test_no_function_is_over_100_lines():
    long = []
    for p in PACKAGE.rglob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 100:
                long.append(f"{p.relative_to(PACKAGE.parent)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1})")
    assert not long, long


def test_every_registered_formulation_states_what_it_is_exact_for_and_needs():
    from colorshare.formulations.registry import AUTO_ORDER, FORMULATIONS
    from colorshare.solvers.registry import BACKENDS, get_backend

    assert set(AUTO_ORDER) == set(FORMULATIONS)
    caps = set().union(*(get_backend(b).capabilities for b in BACKENDS))
    for name, form in FORMULATIONS.items():
        assert form.name == name and form.exact_for and form.requires in caps and callable(form.check)


def test_the_model_graph_implements_the_statistics_actions_read():
    pytest.importorskip("torch")
    from colorshare.torch import build_graph
    from colorshare.torch.actions.base import GraphStatistics
    from colorshare.torch.models import planted_stack

    model, batches = planted_stack(families=2, layers=3, width=16)
    g = build_graph(model, batches, curvature="kfac", progress=False)
    assert isinstance(g, GraphStatistics)
    assert isinstance(g.with_trust_region(0.3), GraphStatistics)
    # no action module names the model graph's class: they read the protocol only
    for p in (PACKAGE / "torch" / "actions").glob("*.py"):
        assert "ModelGraph" not in p.read_text().split('"""', 2)[-1], p.name
