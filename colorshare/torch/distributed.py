"""Data-parallel statistics on ``torch.distributed``: several processes share one calibration pass.

Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment) :func:`init_from_env` opens the
default process group (gloo for a CPU model, nccl for CUDA) and every statistic of :func:`build_graph
<colorshare.torch.build.build_graph>` is computed data-parallel:

- K-FAC (and ``layerwise``): each rank runs the calibration batches ``rank, rank + N, ...`` and the sums of
  input products, output-gradient squares and row counts are all-reduced in float64, so every rank holds the
  one-process statistics up to the order of a sum. The sampled Fisher labels of a batch are drawn from a
  generator seeded by the batch's index, so they do not depend on which rank runs it.
- probes (``probed``): each rank probes the layers ``rank, rank + N, ...`` on the same probe batches and the
  measured ratios are gathered: exactly the one-process values.

Outside a process group (or with one process) every function here is the identity, so the rest of colorshare
calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

__all__ = ["world", "is_main", "init_from_env", "shard", "all_reduce_sum", "all_reduce_ints", "all_gather",
           "broadcast_", "broadcast_object", "close"]

T = TypeVar("T")
_opened = False  # whether init_from_env opened the default group (close() closes only that one)


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` where none is initialized."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0 (or the only one)."""
    return world()[0] == 0


def launched_size() -> int:
    """The number of processes torchrun launched (``WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Open the default process group when launched by torchrun with ``WORLD_SIZE`` > 1 (gloo for ``cpu``,
    nccl for ``cuda``; each rank then uses ``cuda:LOCAL_RANK``); returns ``(rank, world size)``. Does nothing
    (and returns ``(0, 1)``) in a single process; an already open group is kept."""
    size = launched_size()
    if size <= 1 or not torch.distributed.is_available():
        return world()
    if not torch.distributed.is_initialized():
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        global _opened
        _opened = True
    return world()


def close() -> None:
    """Close the default process group if :func:`init_from_env` opened it (a caller's own group is kept)."""
    global _opened
    if _opened and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _opened = False


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: ``items[rank::world size]`` (all of them in a single process).
    ValueError if there are fewer items than processes (a rank would have nothing to contribute)."""
    rank, size = world()
    if size > 1 and len(items) < size:
        raise ValueError(f"{len(items)} item(s) cannot be split over {size} processes: give at least one "
                         f"calibration batch per process")
    return list(items[rank::size])


def _backend_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
        else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, on ``t``'s device and in its dtype (``t`` itself in a single process).
    The reduction runs where the backend needs it (CPU for gloo, this rank's GPU for nccl)."""
    if world()[1] == 1:
        return t
    buf = t.detach().to(_backend_device()).clone()
    torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
    return buf.to(t.device)


def all_reduce_ints(values: Sequence[int]) -> list[int]:
    """The element-wise sum of ``values`` (counts) over the ranks (``list(values)`` in a single process)."""
    if world()[1] == 1:
        return list(values)
    buf = torch.tensor(list(values), dtype=torch.int64, device=_backend_device())
    torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
    return [int(v) for v in buf.tolist()]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order (``[obj]`` in a single process)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_(t: torch.Tensor) -> torch.Tensor:
    """Overwrite ``t`` in place with rank 0's ``t`` (nothing in a single process); returns ``t``."""
    if world()[1] == 1:
        return t
    buf = t.detach().to(_backend_device()).clone()
    torch.distributed.broadcast(buf, src=0)
    with torch.no_grad():
        t.copy_(buf.to(t.device))
    return t


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank (``obj`` itself in a single process)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
