"""The group policy as every reader sees it (pure, stdlib).

A deployment's policy is one document (:mod:`latticehub.policydoc`, named by
``$LATTICEHUB_POLICY``): each group's server ceilings, job limits, idle rules and artifact
cap. The spawner takes its ``group_limits`` from it; the quotas and culling services combine
it with the Hub's deployment facts (hub id, engine, node name, GPUs), which
``hub_ext.*.hubconfig.install`` passes as JSON, into one :class:`Policy`, parsed with the
spawner's own validation so that the services and the spawner agree on every value.

The older spelling, every group setting inside that JSON (``$LATTICEHUB_QUOTAS_POLICY`` with
``group_limits``), still works; :func:`service_policy` says which one was used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latticehub.limits import (
    GroupLimits,
    LimitError,
    choose_group,
    parse_all_group_limits,
    parse_group_limits,
)
from latticehub.policydoc import (  # noqa: F401 - the document's names, here too
    POLICY_ENV,
    GroupSection,
    PolicyDocument,
    PolicyError,
    load_policy,
    parse_policy_document,
    policy_from_env,
)

#: Keys of the services' JSON that the policy document decides (the old spelling).
GROUP_SETTINGS = ("group_limits", "unlisted_group_limits", "no_group_limits", "no_group_pool")

#: Engines the service can read: the local Docker engine or a Docker Swarm.
ENGINES = ("docker", "swarm")


@dataclass(frozen=True)
class Policy:
    """The limit settings of the Hub's spawner.

    Attributes:
        ceilings: admin ceilings per listed group, in the admin's order.
        unlisted: limits of each group not in ``ceilings`` (``None``: not chargeable).
        no_group: limits of the pool of users in no chargeable group (``None``: refused).
        no_group_pool: that pool's name.
        hub_id: the value of the ``org.latticehub.hub`` label of this Hub's servers.
        node_name: the Docker engine's node name (Docker spawner), e.g. ``local``.
        gpu_devices: GPU ids per node.
        engine: ``docker`` or ``swarm``.
    """

    ceilings: dict[str, GroupLimits] = field(default_factory=dict)
    unlisted: GroupLimits | None = None
    no_group: GroupLimits | None = None
    no_group_pool: str = "no-group"
    hub_id: str = "latticehub"
    node_name: str = "local"
    gpu_devices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    engine: str = "docker"

    def ceiling_of(self, group: str, *, hub_group: bool = True) -> GroupLimits | None:
        """The admin's ceiling of a group (``None``: the group has no share).

        Args:
            group: the group (pool) name.
            hub_group: whether a Hub group of that name exists (unlisted groups get
                ``unlisted`` only then).
        """
        if group in self.ceilings:
            return self.ceilings[group]
        if group == self.no_group_pool and self.no_group is not None:
            return self.no_group
        if hub_group and self.unlisted is not None:
            return self.unlisted
        return None

    def is_lowerable(self, group: str) -> bool:
        """Whether managers may lower it (a Hub group with a share; not the no-group pool)."""
        if group in self.ceilings:
            return True
        return self.unlisted is not None and group != self.no_group_pool


def parse_policy(raw: Mapping[str, Any] | str) -> Policy:
    """Parse the policy document (a dict, or its JSON text).

    Keys: ``group_limits``, ``unlisted_group_limits``, ``no_group_limits``,
    ``no_group_pool``, ``hub_id``, ``node_name``, ``gpu_devices``, ``engine`` (all optional).

    Raises:
        ValueError: naming the bad key or value (the spawner's messages for limits).
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise ValueError(f"the quotas policy is not JSON: {e}") from None
    if not isinstance(raw, Mapping):
        raise ValueError("the quotas policy must be a JSON object such as {'group_limits': {}}")
    known = {
        "group_limits",
        "unlisted_group_limits",
        "no_group_limits",
        "no_group_pool",
        "hub_id",
        "node_name",
        "gpu_devices",
        "engine",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(
            f"the quotas policy has unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known))}"
        )
    engine = raw.get("engine") or "docker"
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: use one of {', '.join(ENGINES)}")
    gpu_devices = raw.get("gpu_devices") or {}
    if not isinstance(gpu_devices, Mapping):
        raise ValueError("gpu_devices must map node -> list of GPU ids")
    return Policy(
        ceilings=parse_all_group_limits(raw.get("group_limits") or {}),
        unlisted=_optional(raw.get("unlisted_group_limits"), "unlisted_group_limits"),
        no_group=_optional(raw.get("no_group_limits"), "no_group_limits"),
        no_group_pool=str(raw.get("no_group_pool") or "no-group"),
        hub_id=str(raw.get("hub_id") or "latticehub"),
        node_name=str(raw.get("node_name") or "local"),
        gpu_devices={str(n): tuple(str(i) for i in ids) for n, ids in gpu_devices.items()},
        engine=engine,
    )


def _optional(raw: Any, where: str) -> GroupLimits | None:
    return None if raw is None else parse_group_limits(raw, where=where)


def charged_group(policy: Policy, user: Mapping[str, Any], options: Any) -> str | None:
    """The group a server (or pending spawn) is charged to, as the spawner decides it.

    ``options["group"]`` when the user chose one, otherwise the spawner's default choice (the
    first of the user's groups with a share, in ``group_limits`` order). ``None``: the
    spawner would refuse it.

    Args:
        policy: the spawner's limit settings.
        user: a Hub user model (``name``, ``groups``).
        options: the server's ``user_options``.
    """
    requested = options.get("group") if isinstance(options, Mapping) else None
    if requested is not None and not isinstance(requested, str):
        return None
    try:
        return choose_group(
            user=str(user.get("name") or ""),
            user_groups=list(user.get("groups") or []),
            requested=requested or None,
            group_limits=policy.ceilings,
            unlisted_limits=policy.unlisted,
            no_group_limits=policy.no_group,
            no_group_pool=policy.no_group_pool,
        ).pool
    except LimitError:
        return None


def service_policy(raw: Mapping[str, Any] | str, document: PolicyDocument | None) -> Policy:
    """A service's :class:`Policy`: deployment facts from ``raw``, shares from ``document``.

    Args:
        raw: the service's JSON (``hub_id``, ``node_name``, ``gpu_devices``, ``engine``; in
            the old spelling also the group settings, which then win over the document).
        document: the deployment's policy document (``None``: none is configured).

    Raises:
        ValueError: naming the bad key or value.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise ValueError(f"the service's policy JSON is not JSON: {e}") from None
    if not isinstance(raw, Mapping):
        raise ValueError("the service's policy JSON must be an object such as {'hub_id': 'x'}")
    if document is None or any(k in raw for k in GROUP_SETTINGS):
        return parse_policy(raw)
    return parse_policy({**raw, **document.spawner_settings()})


def uses_old_spelling(raw: Mapping[str, Any] | str) -> bool:
    """Whether a service's policy JSON carries group settings (deprecated: use the document)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return False
    return isinstance(raw, Mapping) and any(k in raw for k in GROUP_SETTINGS)
