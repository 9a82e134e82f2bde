"""Hand memory that Python and the allocators hold but no longer use back to the system, between the
steps of a compression (statistics, solve, apply), whose large transient tensors (covariances, spectra, new
factors) otherwise leave the process's resident size at its high-water mark."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable
from functools import cache

import torch

__all__ = ["release"]



@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (Linux), or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release() -> None:
    """Collect Python's cycles (a model with hooks holds some), return the C heap's free pages to the system
    (glibc ``malloc_trim``: the CPU tensors' memory) and empty the CUDA caching allocator where CUDA is in use.
    Changes no tensor; costs a fraction of a second."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
