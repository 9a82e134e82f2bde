"""The PyTorch adapter: model -> graph, solution -> model, save/load. The only part of colorshare that imports torch.

    from colorshare import solve
    from colorshare.torch import build_graph, apply_coloring, stored_parameters, save_shared, load_shared
    g = build_graph(model, batches)                     # probed K-FAC curvature by default
    sol = solve(g, 0.6 * g.dense_size, backend="highs")
    shared = apply_coloring(model, g, sol)              # a copy; inplace=True changes model
    assert stored_parameters(shared) == stored_parameters(model) - g.dense_size + sol.memory
    save_shared(shared, "model.safetensors")
    save_compressed(shared, "out", tokenizer)           # a transformers model: a folder that loads by itself
    model = load_compressed("out")                      # without the dense weights

    g = build_graph(model, batches, bits=(8, 4, 3))     # bit-widths: the graph counts bytes
    sol = solve(g, 4.5 / 8 * g.dense_parameters, backend="highs")   # 4.5 bits per weight
"""

from .apply import (
                    BasisLinear,
                    InputFactorLinear,
                    QuantLinear,
                    apply_coloring,
                    quantize_classes,
                    stored_memory,
                    stored_parameters,
                    untie,
)
from .build import build_graph
from .checkpoint import load_shared, save_shared
from .curvature import CURVATURES, Curvature, estimate
from .folder import load_compressed, save_compressed
from .heal import heal
from .model_graph import ModelGraph
from .targets import role_of, select_modules

__all__ = ["build_graph", "apply_coloring", "stored_parameters", "save_shared", "load_shared", "untie",
           "select_modules", "role_of", "estimate", "Curvature", "CURVATURES", "ModelGraph", "BasisLinear",
           "InputFactorLinear", "QuantLinear", "stored_memory", "save_compressed", "load_compressed",
           "quantize_classes", "heal"]
