"""Retention of artifact versions (pure policy: which versions a rule deletes).

Per artifact name (within a project), a :class:`RetentionRule` keeps

- every version that has an alias (``best``, ``prod`` ...),
- the highest version (``latest``, the implicit alias), whatever its age,
- the ``keep_last`` highest versions, unless ``max_age_days`` is set and they are older.

Everything else is deleted: versions beyond the last ``keep_last``, and, with
``max_age_days``, unaliased versions older than that. Deleting a version removes its row and
its lineage records; its blob is freed by garbage collection once nothing else references it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

DAY_MS = 86_400_000


class VersionLike(Protocol):
    """What the policy reads of a version."""

    @property
    def project_id(self) -> int: ...  # noqa: D102

    @property
    def name(self) -> str: ...  # noqa: D102

    @property
    def version(self) -> int: ...  # noqa: D102

    @property
    def created(self) -> int: ...  # noqa: D102

    @property
    def aliases(self) -> Sequence[str]: ...  # noqa: D102


V = TypeVar("V", bound=VersionLike)


@dataclass(frozen=True)
class RetentionRule:
    """Keep the last ``keep_last`` versions per name; optionally drop older than N days.

    Attributes:
        keep_last: how many of the highest versions of each name to keep (at least 1;
            default 10). Aliased versions are kept besides and do not count.
        max_age_days: if set, unaliased versions older than this many days go even when
            among the last ``keep_last`` (the latest version always stays).
    """

    keep_last: int = 10
    max_age_days: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.keep_last, bool) or not isinstance(self.keep_last, int):
            raise ValueError(f"keep_last={self.keep_last!r} must be an integer, e.g. 10")
        if self.keep_last < 1:
            raise ValueError(
                f"keep_last={self.keep_last} must be at least 1 (the latest version is always kept)"
            )
        if self.max_age_days is not None and not self.max_age_days > 0:
            raise ValueError(
                f"max_age_days={self.max_age_days!r} must be a positive number of days, or "
                "None for no age limit"
            )


def plan(versions: Iterable[V], rule: RetentionRule, now: int) -> list[V]:
    """The versions ``rule`` deletes, given every version of the names concerned.

    Args:
        versions: all versions of one or more names (any order, any projects).
        rule: the retention rule.
        now: the current time, ms since the epoch (versions' ``created`` unit).

    Returns:
        The versions to delete, by project, name, then version.
    """
    by_name: dict[tuple[int, str], list[V]] = defaultdict(list)
    for v in versions:
        by_name[(v.project_id, v.name)].append(v)
    cutoff = None if rule.max_age_days is None else now - rule.max_age_days * DAY_MS
    doomed: list[V] = []
    for key in sorted(by_name):
        newest_first = sorted(by_name[key], key=lambda v: v.version, reverse=True)
        for rank, v in enumerate(newest_first):
            if rank == 0 or v.aliases:
                continue  # latest, or aliased
            too_many = rank >= rule.keep_last
            too_old = cutoff is not None and v.created < cutoff
            if too_many or too_old:
                doomed.append(v)
    return sorted(doomed, key=lambda v: (v.project_id, v.name, v.version))
