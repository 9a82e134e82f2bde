"""English text that ships with Python and with installed packages, for calibration and held-out evaluation from
different sources (no download).

- :func:`pydoc_text`: the standard library's ``pydoc_data.topics`` (the language reference in prose), the
  even or the odd topics: the default calibration (even) and same-source evaluation (odd) text;
- :func:`stdlib_text`: the docstrings of the standard library's own modules, read from their source files (never
  imported): plenty of English prose to calibrate and heal on, beside the even topics;
- :func:`package_text`: the long descriptions of installed distributions (their ``METADATA`` bodies: READMEs in
  Markdown or reStructuredText), a source the calibration text never saw.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import metadata
from typing import Any

__all__ = ["pydoc_text", "stdlib_text", "package_text", "PACKAGES"]

PACKAGES = ("numpy", "scipy", "networkx", "tqdm", "ortools", "highspy", "pulp", "transformers", "tokenizers",
            "safetensors", "accelerate", "huggingface-hub", "hypothesis", "pytest", "matplotlib", "scikit-learn",
            "gguf", "torch", "jinja2", "pyyaml", "requests", "packaging", "filelock", "sympy", "pillow",
            "fsspec", "regex", "urllib3", "certifi", "idna", "charset-normalizer", "markupsafe", "mpmath",
            "joblib", "threadpoolctl", "kiwisolver", "fonttools", "cycler", "pyparsing", "contourpy",
            "python-dateutil", "six", "typing-extensions", "psutil", "protobuf", "absl-py", "immutabledict")
"""The distributions :func:`package_text` reads, in this order (those installed): the project's own dependencies
and theirs, so that the text exists wherever colorshare's benchmarks run."""


@functools.lru_cache(maxsize=2)
def pydoc_text(parity: int) -> str:
    """The ``pydoc_data.topics`` topics in sorted order, every other one from ``parity`` (0 or 1), joined by blank
    lines."""
    from pydoc_data.topics import topics

    return "".join(topics[k].strip() + "\n\n" for k in sorted(topics)[parity::2])


@functools.lru_cache(maxsize=2)
def stdlib_text(min_chars: int = 200) -> str:
    """The docstrings (modules', classes' and functions') of the standard library's ``.py`` files, in sorted path
    order, tests and IDLE left out, each of at least ``min_chars`` characters, joined by blank lines. Read with
    ``ast`` from the source: nothing is imported."""
    import ast
    import sysconfig
    from pathlib import Path

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("site-packages", "dist-packages", "test", "idlelib", "lib2to3") or "tests" in rel \
                or "test" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    parts.append(doc.strip())
    return "\n\n".join(parts) + "\n"


def _prose(text: str) -> str:
    """The lines of ``text`` that read as prose: 40+ characters, no link or markup, mostly letters and spaces."""
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if len(s) < 40 or "http" in s or "<" in s or "|" in s or s.startswith(("..", "```", "    ", ">>>", "$")):
            continue
        if sum(c.isalpha() or c.isspace() for c in s) >= 0.85 * len(s):
            keep.append(s)
    return "\n".join(keep)


def package_text(names: Sequence[str] = PACKAGES) -> tuple[str, list[str]]:
    """The prose lines of the long descriptions of the installed distributions among ``names`` (in that order),
    one description after another, and the ``name==version`` of each one used (those with 200+ characters of
    prose)."""
    parts, used = [], []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        meta: Any = dist.metadata  # an email.message.Message: the description is its body
        body = meta.get_payload() if hasattr(meta, "get_payload") else None
        text = _prose(str(body or meta.get("Description") or ""))
        if len(text) >= 200:
            parts.append(text)
            used.append(f"{name}=={dist.version}")
    return "\n\n".join(parts) + "\n", used
