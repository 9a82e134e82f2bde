"""Write a folder so that it is whole or absent, never half-written: build it in a staging folder beside the
target, then rename it into place (the database's write-then-rename). A run killed at any point leaves the old
folder (or, between the two renames of a replacement, the old one set aside under a hidden name, never mixed
with the new) or none at the target path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["staging_folder", "publish", "check_target"]


def check_target(out: Path, source: Path | None, overwrite: bool) -> None:
    """ValueError, naming the problem, if ``out`` cannot take a new folder: it is a file, it is (or is inside)
    the ``source`` model folder, it exists and is not empty without ``overwrite``, or its parent cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    if source is not None and source.is_dir():  # a model folder: its files are never written over
        src_dir = source.resolve()
        dest = out.resolve()
        if dest == src_dir or src_dir in dest.parents:
            raise ValueError(f"--out {str(out)!r} is the source folder or inside it ({str(src_dir)!r}): "
                             "choose a folder elsewhere")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {str(out)!r} exists and is not empty: give --overwrite to replace it whole")
    probe = out.parent if out.parent != out else out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r} cannot be written ({str(probe)!r} is not a writable folder)")


def staging_folder(out: Path) -> Path:
    """A new, empty hidden folder beside ``out`` to build it in (any earlier one of this process removed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.colorshare-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    return stage


def publish(stage: Path, out: Path) -> None:
    """Put the finished ``stage`` in place of ``out`` (replacing an existing folder whole)."""
    out = Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.colorshare-old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
