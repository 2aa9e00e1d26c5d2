"""Artifact storage per group: the caps an admin sets and the check of an upload (pure).

Every project's artifacts are counted against one **bucket**: its group, or, for a private
project (no group), its owner's private projects. A bucket holds the bytes of the distinct
blobs its runs' artifacts and its registered versions point to (a blob stored twice in one
group counts once; one stored by two groups counts in each, as each would need it alone).

Caps come from ``ExperimentsApp.artifact_quota``: keys are group names, ``"*"`` for any
group not listed and ``"~"`` for each user's private projects (default: the ``"*"`` value);
values are bytes, a size such as ``"500G"``, or ``None`` for no cap.

>>> caps = parse_storage_caps({"lqcd": "2G", "*": "1G"})
>>> caps.cap_of(Bucket("lqcd"))
2147483648
>>> caps.cap_of(Bucket(None, "ann"))
1073741824
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latticehub.units import format_bytes, parse_bytes

from .store.errors import STORAGE_QUOTA_EXCEEDED, TrackingError

#: the key of groups not listed
ANY_GROUP = "*"
#: the key of each user's private projects (falls back to ``ANY_GROUP``)
PRIVATE = "~"
#: values that mean "no cap"
_UNLIMITED = (None, "", "none", "unlimited")


@dataclass(frozen=True)
class Bucket:
    """Where a project's artifacts are counted: its group, else its owner's private projects.

    Attributes:
        group: the project's group (``None`` for a private project).
        owner: the owner of a private project (unused for a group's).
    """

    group: str | None
    owner: str | None = None

    @property
    def label(self) -> str:
        """For messages: ``group 'lqcd'`` or ``ann's private projects``."""
        if self.group is not None:
            return f"group {self.group!r}"
        return f"{self.owner}'s private projects"

    @property
    def quota_key(self) -> str:
        """The ``artifact_quota`` key whose value caps this bucket (before the default)."""
        return self.group if self.group is not None else PRIVATE


def bucket_of(project: Any) -> Bucket:
    """The bucket of a project (anything with ``group`` and ``owner``)."""
    if project.group is not None:
        return Bucket(project.group)
    return Bucket(None, project.owner)


def _cap_value(key: str, value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in _UNLIMITED:
        return None
    if value is None:
        return None
    try:
        return parse_bytes(value, name=f"artifact_quota[{key!r}]")
    except ValueError as e:
        raise ValueError(f"{e}; or null for no cap") from None


@dataclass(frozen=True)
class StorageCaps:
    """Parsed caps: bytes per key (``None``: no cap).

    Attributes:
        caps: the cap of each listed group, of ``"*"`` and of ``"~"``.
    """

    caps: Mapping[str, int | None] = field(default_factory=dict)

    def cap_of(self, bucket: Bucket) -> int | None:
        """The cap in bytes of ``bucket``; ``None`` when it has none."""
        if bucket.quota_key in self.caps:
            return self.caps[bucket.quota_key]
        return self.caps.get(ANY_GROUP)

    @property
    def enabled(self) -> bool:
        """Whether any bucket has a cap (no count is made when none has)."""
        return any(v is not None for v in self.caps.values())


def parse_storage_caps(raw: Mapping[str, Any] | None) -> StorageCaps:
    """Validate ``artifact_quota`` (see the module docstring).

    Raises:
        ValueError: a key that is not a name or a value that is not a size, with the fix.

    >>> parse_storage_caps({"lqcd": None, "*": 1024}).caps
    {'lqcd': None, '*': 1024}
    """
    if raw is None:
        return StorageCaps()
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"artifact_quota={raw!r} must map group names to sizes, e.g. "
            '{"lqcd": "500G", "*": "100G", "~": "10G"}'
        )
    caps: dict[str, int | None] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(
                f"artifact_quota key {key!r} must be a group name, '*' (groups not listed) "
                "or '~' (each user's private projects)"
            )
        caps[key] = _cap_value(key, value)
    return StorageCaps(caps)


def storage_json(bucket: Bucket, used: int, cap: int | None) -> dict[str, Any]:
    """One bucket's usage as the API and the quotas pages show it."""
    return {
        "group": bucket.group,
        **({"owner": bucket.owner} if bucket.group is None else {}),
        "used_bytes": used,
        "cap_bytes": cap,
        "free_bytes": None if cap is None else max(cap - used, 0),
    }


def check_upload(bucket: Bucket, cap: int | None, used: int, adding: int) -> None:
    """Refuse an upload of ``adding`` new bytes that would take ``bucket`` past its cap.

    Raises:
        TrackingError: ``STORAGE_QUOTA_EXCEEDED`` (HTTP 413) naming the bucket, its use,
            its cap and what to do.

    >>> check_upload(Bucket("lqcd"), 100, 60, 40)
    >>> check_upload(Bucket("lqcd"), None, 10**12, 10**12)
    """
    if cap is None or adding <= 0 or used + adding <= cap:
        return
    raise TrackingError(
        f"artifact storage of {bucket.label} is capped at {format_bytes(cap)} "
        f"({cap} bytes) and {used} bytes are in use: this upload of {adding} bytes would "
        "pass the cap. Delete artifacts you no longer need (DELETE "
        "/api/v1/runs/<run_id>/artifacts/<path>) or registered versions, or ask an admin "
        "to raise "
        f"ExperimentsApp.artifact_quota[{bucket.quota_key!r}]",
        STORAGE_QUOTA_EXCEEDED,
    )
