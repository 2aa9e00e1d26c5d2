"""What to cull this round, per group (pure: no I/O, no clock).

Inputs are the groups' limits (the admin's ``group_limits``; ``max_servers`` as lowered by a
manager) and the servers each group holds right now. Each round gets its own plan, so a group
that fills up switches to its shorter ``idle_timeout_busy`` at the next round, and back when
servers stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from latticehub.limits import GroupLimits
from latticehub.policy import Policy
from latticehub.policy import charged_group as policy_charged_group

#: The ``group_limits`` keys the culler reads.
IDLE_KEYS = ("idle_timeout", "idle_timeout_busy", "max_age")
#: Default share of ``max_servers`` from which a group counts as busy.
DEFAULT_BUSY_FRACTION = 0.8


def has_idle_settings(limits: GroupLimits | None) -> bool:
    """Whether a group's limits set any of :data:`IDLE_KEYS`."""
    return limits is not None and any(getattr(limits, k) is not None for k in IDLE_KEYS)


@dataclass(frozen=True)
class GroupRule:
    """How one group's servers are judged in this round.

    Attributes:
        group: the group (pool) name.
        timeout: seconds of inactivity after which a server is stopped (``None``: never
            for inactivity).
        max_age: seconds after its start after which a server is stopped even if active
            (``None``: no maximum).
        busy: whether the group runs at least the busy fraction of ``max_servers``.
        running: servers the group holds (ready, starting or stopping).
        max_servers: the group's effective ``max_servers`` (``None``: no limit).
        timeout_key: the key ``timeout`` comes from (``idle_timeout`` or
            ``idle_timeout_busy``), for messages.
    """

    group: str
    timeout: int | None
    max_age: int | None
    busy: bool = False
    running: int = 0
    max_servers: int | None = None
    timeout_key: str = "idle_timeout"

    def describe(self) -> str:
        """One line for the log, e.g. ``lqcd: idle 900s (busy 3/3), max age none``."""
        load = f"{self.running}/{self.max_servers if self.max_servers is not None else '-'}"
        idle = f"{self.timeout}s" if self.timeout is not None else "none"
        age = f"{self.max_age}s" if self.max_age is not None else "none"
        state = "busy" if self.busy else "not busy"
        return f"{self.group}: idle {idle} ({state} {load}), max age {age}"


def is_busy(running: int, max_servers: int | None, busy_fraction: float) -> bool:
    """Whether a group is near its limit: ``running >= busy_fraction * max_servers``.

    A group without ``max_servers`` is never busy; one with ``max_servers=0`` is busy as
    soon as it holds a server.

    >>> is_busy(4, 5, 0.8), is_busy(3, 5, 0.8), is_busy(9, None, 0.8)
    (True, False, False)
    """
    if max_servers is None:
        return False
    if max_servers == 0:
        return running > 0
    return running >= busy_fraction * max_servers


def rule_for(
    group: str, limits: GroupLimits, running: int, *, busy_fraction: float
) -> GroupRule | None:
    """The rule of one group for this round (``None``: the group's servers are never culled).

    The idle timeout is ``idle_timeout_busy`` while the group is busy (when set), otherwise
    ``idle_timeout``; ``max_age`` holds in both cases.
    """
    busy = is_busy(running, limits.max_servers, busy_fraction)
    timeout, key = limits.idle_timeout, "idle_timeout"
    if busy and limits.idle_timeout_busy is not None:
        timeout, key = limits.idle_timeout_busy, "idle_timeout_busy"
    if timeout is None and limits.max_age is None:
        return None
    return GroupRule(
        group=group,
        timeout=timeout,
        max_age=limits.max_age,
        busy=busy,
        running=running,
        max_servers=limits.max_servers,
        timeout_key=key,
    )


def plan_round(
    limits: Mapping[str, GroupLimits],
    running: Mapping[str, int],
    *,
    busy_fraction: float = DEFAULT_BUSY_FRACTION,
) -> dict[str, GroupRule]:
    """Per-group rules for one round.

    Args:
        limits: each group's effective limits (group name -> limits).
        running: servers each group holds now (missing: 0).
        busy_fraction: share of ``max_servers`` from which a group is busy, in (0, 1].

    Returns:
        group name -> rule, for the groups whose servers may be culled, in ``limits``'
        order.
    """
    if not 0 < busy_fraction <= 1:
        raise ValueError(f"busy_fraction={busy_fraction!r} must be in (0, 1], e.g. 0.8")
    rules = {}
    for group, group_limits in limits.items():
        rule = rule_for(group, group_limits, running.get(group, 0), busy_fraction=busy_fraction)
        if rule is not None:
            rules[group] = rule
    return rules


def cull_reason(rule: GroupRule, *, inactive_s: float | None, age_s: float | None) -> str | None:
    """Why a server of the group is stopped now, or ``None`` to keep it.

    Args:
        rule: the group's rule for this round.
        inactive_s: seconds since the server's last activity (``None``: unknown).
        age_s: seconds since the server started (``None``: unknown).

    >>> cull_reason(GroupRule("a", 60, None), inactive_s=61, age_s=100)
    'idle 61s >= idle_timeout 60s'
    """
    if rule.timeout is not None and inactive_s is not None and inactive_s >= rule.timeout:
        which = rule.timeout_key
        if rule.busy:
            which = f"{which} (group busy: {rule.running}/{rule.max_servers} servers)"
        return f"idle {inactive_s:.0f}s >= {which} {rule.timeout}s"
    if rule.max_age is not None and age_s is not None and age_s >= rule.max_age:
        return f"age {age_s:.0f}s >= max_age {rule.max_age}s"
    return None


def charged_group(policy: Policy, user: Mapping[str, Any], server: Mapping[str, Any]) -> str | None:
    """The group a server is charged to, as the spawner decides it (``None``: none).

    ``user_options["group"]`` when the user chose one, otherwise the spawner's default
    choice (the first of the user's groups with a share, in ``group_limits`` order).
    """
    return policy_charged_group(policy, user, server.get("user_options") or {})


@dataclass(frozen=True)
class ServerRef:
    """One server of an active user and the group it is charged to."""

    user: str
    server: str
    group: str
    url: str


def charged_servers(policy: Policy, users: Iterable[Mapping[str, Any]]) -> list[ServerRef]:
    """Every server of the listed users with its charged group (servers of none left out).

    Args:
        policy: the spawner's limit settings.
        users: user models from ``GET /users?state=active`` (with ``servers`` and ``groups``).
    """
    found = []
    for user in users:
        for name, server in (user.get("servers") or {}).items():
            if not isinstance(server, Mapping):
                continue
            group = charged_group(policy, user, server)
            if group is not None:
                found.append(
                    ServerRef(str(user.get("name")), str(name), group, str(server.get("url")))
                )
    return found


def count_by_group(servers: Iterable[ServerRef]) -> dict[str, int]:
    """Servers held per group.

    >>> count_by_group([ServerRef("a", "", "g", "/user/a/"), ServerRef("b", "", "g", "/u")])
    {'g': 2}
    """
    counts: dict[str, int] = {}
    for s in servers:
        counts[s.group] = counts.get(s.group, 0) + 1
    return counts
