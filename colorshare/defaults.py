"""Defaults that the torch adapter (``build_graph``) and the command line (``colorshare compress``) share, so
that the Python route and the command build the same graph. torch-free: the CLI reads them without torch."""

from __future__ import annotations

__all__ = ["CURVATURE", "CROSS_LAYER", "PROBE_TOKENS", "TRUST_REGION", "MAX_GROUP_SIZE", "HEAL_STEPS", "HEAL_LR"]

CURVATURE = "probed"
"""The loss surrogate: K-FAC with each layer's level fitted to one measured probe cut (``colorshare.torch.probe``);
measured to rank real quality best at equal budget."""

CROSS_LAYER = False
"""Whether layers of one role in different blocks may share. False: classes stay within a block (per-layer low
rank, and shared input-side factors of layers fed one input: q/k/v, gate/up), a space proven in time linear in
the layers; True adds cross-layer classes, whose proof needs every same-role pair's statistics (quadratic in
the depth; ``build_graph`` computes them as a step of its own)."""

PROBE_TOKENS = 256
"""Tokens each probe and each measured class runs on (whole sequences of the first calibration batch): on SmolLM2
rho at equal budget 0.947 against 0.961 on 2048 tokens (benchmarks/results/probe-tokens), an eighth of the cost."""

TRUST_REGION = 0.6
"""Cap on each layer's relative whitened error ``||(W' - W) L||^2 / ||W L||^2``."""

MAX_GROUP_SIZE = 2
"""Largest sharing class of a model's graph when it may share bases (Basis Sharing's group size)."""

HEAL_STEPS = 240
"""Healing steps (one batch of 4 x 256 tokens a step) for ``heal`` and ``--heal`` without a number: what fits three
times the rest of ``colorshare compress`` on SmolLM2 at keep 80 % on a 2-core CPU (docs/compress.md, Healing)."""

HEAL_LR = 1e-4
"""Healing's peak learning rate (AdamW)."""
