"""The action interface (colorshare.torch.actions): an action defined outside the package, registered once,
is priced, bounded, solved, built, saved and loaded like the built-in ones, with no other change."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from colorshare import solve  # noqa: E402
from colorshare.formulations.bounds import KindBound  # noqa: E402
from colorshare.formulations.costs import Option  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_shared, save_shared, stored_parameters  # noqa: E402
from colorshare.torch.actions import REGISTRY, Action, get_action, register  # noqa: E402
from colorshare.torch.models import planted_stack  # noqa: E402


class PlainMean(Action):
    """The members become one tensor, their plain (unweighted) mean: a tie without curvature weights."""

    name = "plain-mean"

    def _option(self, g, group, trust):
        W = sum(g.weight(i) for i in group) / len(group)
        errs = [g.curvatures[i].quad(W - g.weight(i)) for i in group]
        if trust and not g.fits(e / max(g.energy(i), 1e-300) for e, i in zip(errs, group)):
            return None
        return Option(self.name, math.fsum(errs), int(g.sizes[group[0]]))

    def options(self, g, group):
        opt = self._option(g, group, True) if len(group) > 1 else None
        return [opt] if opt is not None else []

    def class_option(self, g, group, memory, trust):
        return self._option(g, group, trust) if len(group) > 1 and memory == g.sizes[group[0]] else None

    def weights(self, g, members, rank, representative):
        W = sum(g.weight(i) for i in members) / len(members)
        return [W for _ in members]

    def bounds(self, g, family, pos):  # a cost is >= 0: the weakest valid bound
        return [KindBound("plain-mean", int(g.sizes[family[0]]), 0, np.zeros(len(family)))]

    def apply(self, g, cl, target, mods):
        first = mods[g.module_names[cl.members[0]]].weight
        W = self.weights(g, cl.members, None, None)[0].reshape(first.shape)
        shared = torch.nn.Parameter(W.to(dtype=first.dtype, device=first.device))
        for i in cl.members:
            mods[g.module_names[i]].weight = shared


@pytest.fixture
def plain_mean():
    action = register(PlainMean())
    yield action
    REGISTRY.pop(action.name)


def test_a_registered_action_is_solved_built_saved_and_loaded(plain_mean, tmp_path):
    model, batches = planted_stack(families=2, layers=4, width=12, seed=3)
    g = build_graph(model, batches, curvature="layerwise", actions=("plain-mean", "dense"), trust_region=None,
                    progress=False)
    sol = solve(g, 0.6 * g.dense_size, backend="highs")
    assert sol.status.value == "optimal"
    shared = [c for c in sol.classes if c.action == "plain-mean"]
    assert shared, "the budget needs some sharing"
    out = apply_coloring(model, g, sol)
    assert stored_parameters(out) == stored_parameters(model) - g.dense_size + sol.memory
    mods = dict(out.named_modules())
    for c in shared:  # the members hold the plain mean, one tensor
        ws = [mods[g.module_names[i]].weight for i in c.members]
        assert len({id(w) for w in ws}) == 1
        mean = sum(g.weight(i) for i in c.members) / len(c.members)
        assert torch.allclose(ws[0].double(), mean, atol=1e-6)
        assert g.class_option(c.members, "plain-mean", c.memory).cost == pytest.approx(c.cost)
    save_shared(out, tmp_path / "m.safetensors")
    back = load_shared(tmp_path / "m.safetensors", planted_stack(families=2, layers=4, width=12, seed=3)[0])
    assert stored_parameters(back) == stored_parameters(out)
    x = batches[0][0] if isinstance(batches[0], (tuple, list)) else batches[0]
    with torch.no_grad():
        assert torch.allclose(back(x), out(x))


def test_unknown_or_duplicate_actions_are_named():
    with pytest.raises(ValueError, match="unknown action 'fold'; valid: dense, tie, medoid, basis, input"):
        get_action("fold")
    with pytest.raises(ValueError, match="registered already"):
        register(PlainMean.__new__(type("Tie2", (PlainMean,), {"name": "tie"})))
    bad = type("Odd", (PlainMean,), {"name": "odd", "scope": "block"})()
    with pytest.raises(ValueError, match="scope must be"):
        register(bad)
