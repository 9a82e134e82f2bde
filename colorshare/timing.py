"""Seconds and peak resident memory of named steps: one timer for ``compress``, the benchmarks and the suite.

>>> steps = Steps()
>>> with steps("solve"):
...     pass
>>> list(steps.seconds)
['solve']

Memory is the process's resident-set high-water mark, in GiB (2^30 bytes): ``VmHWM`` from ``/proc/self/status``
(Linux), else ``getrusage``'s ``ru_maxrss``. With ``per_step=True`` the mark is reset before each step (Linux:
``/proc/self/clear_refs``), so each step's peak is its own.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Steps", "peak_rss_gib", "reset_peak_rss", "GIB"]

GIB = 2**30
"""Bytes in a GiB: every memory figure colorshare prints is in GiB (or MiB = 2^20 bytes), labelled so."""


def peak_rss_gib() -> float:
    """The process's peak resident memory so far, in GiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / GIB if sys.platform == "darwin" else rss * 1024 / GIB


def reset_peak_rss() -> bool:
    """Reset the peak-resident mark to the current resident size (Linux only); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Steps:
    """Named steps' seconds (``seconds``) and peak resident GiB (``peaks``), in the order they ran.

    ``per_step``: reset the peak mark before each step (each step's own peak); ``before(name)`` and
    ``after(name)``: called at the start and the end of each step, inside its timing (e.g. a device's peak
    statistics, or releasing freed memory back to the system); ``on_end(name, seconds)``: told when a step ends
    (a progress line)."""

    def __init__(self, per_step: bool = False, before: Callable[[str], None] | None = None,
                 after: Callable[[str], None] | None = None,
                 on_end: Callable[[str, float], None] | None = None) -> None:
        self.per_step = per_step
        self.before = before
        self.after = after
        self.on_end = on_end
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.per_step:
            reset_peak_rss()
        if self.before is not None:
            self.before(name)
        t = time.perf_counter()
        try:
            yield
            if self.after is not None:
                self.after(name)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            self.peaks[name] = peak_rss_gib()
        if self.on_end is not None:
            self.on_end(name, self.seconds[name])
