"""Who may see and lower which group's limits (pure).

The manager rule: **a manager of group g is whoever the Hub itself lets change g**, that is,
whoever holds the scope ``groups!group=g`` (or the unfiltered ``groups`` /
``admin:groups``, which admins hold: they manage every group). Admins grant it with a role
in ``load_roles``; JupyterHub has no REST API to assign roles, so a manager cannot grant it to
themselves. The scopes come from the caller's token as the Hub reports them (``scopes`` in
the ``/hub/api/user`` model); the service's OAuth client asks for ``groups`` so that a
browser login token carries the user's group scopes (intersected with what the user holds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Scopes that let their holder change every group.
ALL_GROUPS_SCOPES = frozenset({"groups", "admin:groups"})
#: Scope prefixes that let their holder change one group.
GROUP_SCOPE_PREFIXES = ("groups!group=", "admin:groups!group=")


@dataclass(frozen=True)
class GroupRights:
    """The groups a caller may manage (see and lower), from their token's scopes.

    Not who the caller is nor which groups they belong to: that is the experiments
    service's ``Viewer``; this is only the manager rule.

    Attributes:
        name: the user (or service) name.
        all_groups: manages every group (admins).
        manages: the groups this caller manages (when not ``all_groups``).
    """

    name: str
    all_groups: bool = False
    manages: frozenset[str] = field(default_factory=frozenset)

    def can_manage(self, group: str) -> bool:
        """Whether the caller may see and lower ``group``."""
        return self.all_groups or group in self.manages

    @property
    def is_manager(self) -> bool:
        """Whether the caller manages at least one group."""
        return self.all_groups or bool(self.manages)


#: The name this class had (the quotas service's "viewer"), kept for old imports.
Viewer = GroupRights


def viewer_from_scopes(name: str, scopes: Iterable[str]) -> GroupRights:
    """The viewer for a caller holding ``scopes`` (expanded, as the Hub reports them).

    >>> viewer_from_scopes("ann", ["groups!group=lqcd", "read:groups!group=lqcd"]).manages
    frozenset({'lqcd'})
    """
    scopes = set(scopes)
    if scopes & ALL_GROUPS_SCOPES:
        return GroupRights(name=name, all_groups=True)
    manages = set()
    for scope in scopes:
        for prefix in GROUP_SCOPE_PREFIXES:
            if scope.startswith(prefix) and len(scope) > len(prefix):
                manages.add(scope[len(prefix) :])
    return GroupRights(name=name, manages=frozenset(manages))


def viewer_from_model(model: Mapping[str, Any]) -> GroupRights:
    """The viewer for a Hub user (or service) model with its token's ``scopes``."""
    return viewer_from_scopes(str(model.get("name") or ""), model.get("scopes") or ())
