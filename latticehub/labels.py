"""Container/service labels that let the ledger be rebuilt from the engine (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from .slots import RUNNING, Slot

PREFIX = "org.latticehub"
HUB = f"{PREFIX}.hub"
GROUP = f"{PREFIX}.group"
USER = f"{PREFIX}.user"
SERVER = f"{PREFIX}.server"
NODE = f"{PREFIX}.node"
GPUS = f"{PREFIX}.gpus"
GPU_SHARED = f"{PREFIX}.gpu-shared"
MEM = f"{PREFIX}.mem-bytes"
CPU = f"{PREFIX}.cpus"


def render_labels(hub_id: str, slot: Slot) -> dict[str, str]:
    """Labels for the container/service that holds ``slot``.

    >>> render_labels("hub", Slot(pool="lqcd", user="ann", server="", token="t"))[GROUP]
    'lqcd'
    """
    labels = {
        HUB: hub_id,
        GROUP: slot.pool,
        USER: slot.user,
        SERVER: slot.server,
        NODE: slot.node,
        GPUS: ",".join(slot.gpus),
        GPU_SHARED: "1" if slot.gpu_shared else "0",
    }
    if slot.mem_limit is not None:
        labels[MEM] = str(slot.mem_limit)
    if slot.cpu_limit is not None:
        labels[CPU] = f"{slot.cpu_limit:g}"
    return labels


def slot_from_labels(labels: Mapping[str, str], object_id: str, since: float = 0.0) -> Slot | None:
    """Rebuild a running slot from an object's labels (``None`` if not ours or malformed)."""
    try:
        pool, user = labels[GROUP], labels[USER]
    except KeyError:
        return None
    if not pool or not user:
        return None
    gpus = tuple(g for g in labels.get(GPUS, "").split(",") if g)
    try:
        mem = int(labels[MEM]) if labels.get(MEM) else None
        cpu = float(labels[CPU]) if labels.get(CPU) else None
    except ValueError:
        mem = cpu = None
    return Slot(
        pool=pool,
        user=user,
        server=labels.get(SERVER, ""),
        state=RUNNING,
        node=labels.get(NODE, ""),
        gpus=gpus,
        gpu_shared=labels.get(GPU_SHARED) == "1",
        mem_limit=mem,
        cpu_limit=cpu,
        object_id=object_id,
        since=since,
        claimed=False,
    )
