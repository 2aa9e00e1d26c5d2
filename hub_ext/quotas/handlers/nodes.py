"""``api/nodes``: per-node usage (admins see every group's share, managers their own)."""

from __future__ import annotations

from ..usage import node_json
from .api import APIHandler


class NodeListAPIHandler(APIHandler):
    """``GET api/nodes``: servers, reserved CPUs / memory / GPUs and capacity per node."""

    async def get(self) -> None:
        """Each node; the per-group split shows only the caller's groups."""
        viewer = self.manager()
        usage = await self.snapshot()
        items = [node_json(n, viewer.can_manage) for n in usage.nodes]
        self.write_items(items, taken_at=usage.taken_at)
