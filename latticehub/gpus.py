"""Assignment of specific GPU device ids on nodes (pure).

Two servers never get the same GPU unless both belong to groups whose limits allow
sharing (``gpu_sharing``); even then a free GPU is preferred over a shared one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuUse:
    """One server's use of GPUs on a node."""

    node: str
    ids: tuple[str, ...]
    shared: bool


@dataclass(frozen=True)
class GpuAssignment:
    """The node and device ids given to a new server."""

    node: str
    ids: tuple[str, ...]


class NoGpuAvailable(Exception):
    """No node has enough GPUs for the request (a capacity problem, not a bad request)."""


def assign_gpus(
    *,
    inventory: Mapping[str, Sequence[str]],
    in_use: Iterable[GpuUse],
    count: int,
    shared: bool,
    nodes: Sequence[str] | None = None,
) -> GpuAssignment | None:
    """Pick ``count`` GPU ids on one node.

    Args:
        inventory: node name -> its GPU device ids, e.g. ``{"gpu01": ["0", "1"]}``.
        in_use: GPUs held by running or pending servers.
        count: how many GPUs the new server needs; 0 returns ``None``.
        shared: whether the new server may share GPUs with other sharing servers.
        nodes: restrict the choice to these nodes (``None``: any node in the inventory).

    Returns:
        The assignment, or ``None`` when ``count`` is 0.

    Raises:
        NoGpuAvailable: when no allowed node has enough usable GPUs.
    """
    if count <= 0:
        return None
    exclusive: dict[str, set[str]] = {}
    sharers: dict[str, dict[str, int]] = {}
    for use in in_use:
        for gpu in use.ids:
            if use.shared:
                sharers.setdefault(use.node, {}).setdefault(gpu, 0)
                sharers[use.node][gpu] += 1
            else:
                exclusive.setdefault(use.node, set()).add(gpu)
    candidates = [n for n in inventory if nodes is None or n in nodes]
    best: tuple[tuple[int, int, str], GpuAssignment] | None = None
    for node in candidates:
        taken = exclusive.get(node, set())
        shared_load = sharers.get(node, {})
        free = [g for g in inventory[node] if g not in taken and g not in shared_load]
        usable = list(free)
        if shared:
            # least-loaded shared GPUs after the free ones
            usable += sorted(
                (g for g in inventory[node] if g not in taken and g in shared_load),
                key=lambda g: (shared_load[g], g),
            )
        if len(usable) < count:
            continue
        ids = tuple(usable[:count])
        sharing_needed = sum(1 for g in ids if g in shared_load)
        # prefer nodes where less sharing is needed, then the fullest node (packing
        # keeps whole nodes free for multi-GPU requests), then the name for stability
        key = (sharing_needed, len(free), node)
        if best is None or key < best[0]:
            best = (key, GpuAssignment(node=node, ids=ids))
    if best is None:
        where = ", ".join(candidates) or "no node"
        raise NoGpuAvailable(f"no node ({where}) has {count} free GPU(s)")
    return best[1]
