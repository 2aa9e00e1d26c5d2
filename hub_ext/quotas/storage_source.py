"""Artifact storage per group, asked of the experiments service over HTTP.

The experiments service counts each group's artifact storage and knows its cap
(``ExperimentsApp.artifact_quota``). The quotas pages show it beside the servers and jobs,
read from ``GET /api/v1/storage`` with this service's own Hub token, which holds only
``access:services!service=experiments`` and the custom scope
``custom:latticehub-usage:read`` (``hubconfig.install`` grants both). Nothing of the
experiments service's tables or modules is used here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .experiments_api import ExperimentsReader


class StorageUnavailable(Exception):
    """The experiments service did not answer with the groups' storage."""


@dataclass(frozen=True)
class GroupStorage:
    """A group's artifact storage.

    Attributes:
        group: the group.
        used_bytes: bytes of the distinct blobs its runs and registered versions hold.
        cap_bytes: its cap (``None``: no cap).
    """

    group: str
    used_bytes: int
    cap_bytes: int | None

    @property
    def percent(self) -> float | None:
        """Use as a percentage of the cap (``None`` without a cap)."""
        if not self.cap_bytes:
            return None
        return 100.0 * self.used_bytes / self.cap_bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"used_bytes": self.used_bytes, "cap_bytes": self.cap_bytes}


class StorageSource(abc.ABC):
    """Artifact storage of groups."""

    @abc.abstractmethod
    async def storage(self, groups: Iterable[str]) -> dict[str, GroupStorage]:
        """Each group's storage.

        Raises:
            StorageUnavailable: with the reason, when it cannot be read.
        """


class ExperimentsStorageSource(ExperimentsReader, StorageSource):
    """:class:`StorageSource` over the experiments API (``GET /api/v1/storage``)."""

    unavailable = StorageUnavailable

    async def storage(self, groups: Iterable[str]) -> dict[str, GroupStorage]:  # noqa: D102
        names = sorted(set(groups))
        if not names:
            return {}
        answer = await self.get_items("/api/v1/storage", [("group", g) for g in names])
        try:
            return {
                str(i["group"]): GroupStorage(
                    str(i["group"]), int(i["used_bytes"]), i.get("cap_bytes")
                )
                for i in answer["items"]
                if i.get("group") is not None
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StorageUnavailable(f"the experiments service sent a bad item: {e!r}") from e
