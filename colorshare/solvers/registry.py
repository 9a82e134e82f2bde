"""The one table of backends. Adding a backend = one module with a :class:`Backend` subclass + one line here."""

from __future__ import annotations

import importlib

from .backend import Backend

__all__ = ["BACKENDS", "get_backend", "available_backends", "backend_names", "backends_with"]

BACKENDS: dict[str, str] = {
    "cpsat": "colorshare.solvers.cpsat:CpSatBackend",
    "highs": "colorshare.solvers.highs:HighsBackend",
    "pulp": "colorshare.solvers.pulp_cbc:PulpCbcBackend",
    "anneal": "colorshare.solvers.anneal:AnnealBackend",
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; ValueError naming the valid ones if unknown or unavailable."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    try:
        backend: type[Backend] = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ValueError(f"backend {name!r} cannot load: {exc}") from None
    reason = backend.unavailable_reason()
    if reason is not None:
        raise ValueError(f"backend {name!r} is not available here: {reason}")
    return backend


def available_backends() -> dict[str, str | None]:
    """Every registered backend mapped to None if it can run here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            get_backend(name)
            out[name] = None
        except ValueError as exc:
            out[name] = str(exc)
    return out


def backends_with(capability: str) -> list[str]:
    """The registered backends that can run here and declare ``capability`` (see ``Backend.capabilities``)."""
    out = []
    for name in BACKENDS:
        try:
            if capability in get_backend(name).capabilities:
                out.append(name)
        except ValueError:
            continue
    return out
