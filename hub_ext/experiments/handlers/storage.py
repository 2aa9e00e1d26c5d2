"""``/api/v1/storage``: artifact storage in use and its cap, per group and private projects.

Members see their groups and their own private projects; admins and a Hub service holding
the custom scope :data:`.base.USAGE_READ_SCOPE` (the quotas service, for its pages) see any
group. Nothing else about other groups is shown.
"""

from __future__ import annotations

from typing import Any

from ..storage import Bucket, StorageCaps, storage_json
from ..store.errors import PERMISSION_DENIED, TrackingError
from .base import BaseHandler
from .schemas import PathItems, Query, operation, ref

#: At most this many groups per request.
MAX_GROUPS = 500


class StorageHandler(BaseHandler):
    """``GET /api/v1/storage[?group=g ...]``."""

    @property
    def caps(self) -> StorageCaps:
        """The caps, injected through settings (none: no bucket is capped)."""
        return self.settings.get("storage_caps") or StorageCaps()

    def _reads_every_group(self) -> bool:
        return self.usage_reader() or self.viewer.admin

    def get(self) -> None:
        """Use and cap of each group asked for (default: the caller's groups and private).

        403 for a group the caller is not a member of (admins and the quotas service may
        ask for any); a service without :data:`.base.USAGE_READ_SCOPE` gets 403.
        """
        asked = self.get_arguments("group")
        if len(asked) > MAX_GROUPS:
            raise TrackingError(f"ask for at most {MAX_GROUPS} groups per request")
        if self._reads_every_group():
            buckets = [Bucket(g) for g in (asked or self.store.groups_with_projects())]
        else:
            viewer = self.viewer
            if viewer.run_id is not None:
                raise TrackingError("a job token may not read storage use", PERMISSION_DENIED)
            strangers = sorted(set(asked) - set(viewer.groups))
            if strangers:
                raise TrackingError(
                    f"{viewer.name} is not a member of {', '.join(map(repr, strangers))}: ask "
                    "for your own groups (or none, for all of them)",
                    PERMISSION_DENIED,
                )
            buckets = [Bucket(g) for g in (asked or sorted(viewer.groups))]
            if not asked:
                buckets.append(Bucket(None, viewer.name))
        items: list[dict[str, Any]] = []
        for bucket in buckets:
            used = self.store.bucket_bytes(bucket.group, bucket.owner)
            items.append(storage_json(bucket, used, self.caps.cap_of(bucket)))
        self.write_json({"items": items, "capped": self.caps.enabled})


default_handlers = [(r"/api/v1/storage", StorageHandler)]

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/storage": {
        "get": operation(
            "Artifact storage in use and its cap: your groups and private projects (admins "
            "and services with custom:latticehub-usage:read: any group)",
            query=(Query("group", "string", "a group (repeatable); default: all of yours"),),
            returns=ref("StorageList"),
        )
    },
}
