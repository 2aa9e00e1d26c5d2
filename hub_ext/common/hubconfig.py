"""What every service's ``install`` reads from the Hub's configuration (at config time).

:func:`policy_document` resolves the spawner's limit settings as traitlets would, so that the
quotas and culling services get the same document the spawner enforces
(:mod:`latticehub.policy` parses it).
"""

from __future__ import annotations

from typing import Any

from traitlets.config import Config


def policy_document(config: Config, spawner_class: type) -> dict[str, Any]:
    """The spawner's limit settings, resolved as traitlets would for ``spawner_class``.

    Sections of every class in the spawner's MRO are merged (the most derived wins), so
    ``c.GroupLimitDockerSpawner.group_limits`` and settings on a base class both count;
    unset values take the traits' defaults (e.g. ``hub_id`` from ``$LATTICEHUB_HUB_ID``).
    """
    from dockerspawner import SwarmSpawner

    from spawner.traits import GroupLimitsConfig

    merged = Config()
    for klass in reversed(spawner_class.__mro__):
        if config._has_section(klass.__name__):
            merged.merge(config[klass.__name__])
    wanted = set(GroupLimitsConfig.class_trait_names(config=True))
    section = Config({k: v for k, v in merged.items() if k in wanted})
    probe = GroupLimitsConfig(config=Config({"GroupLimitsConfig": section}))
    node_name = merged.get("node_name")
    if not isinstance(node_name, str):
        trait = spawner_class.class_traits().get("node_name")
        node_name = trait.default_value if trait is not None else "local"
    return {
        "group_limits": dict(probe.group_limits),
        "unlisted_group_limits": probe.unlisted_group_limits,
        "no_group_limits": probe.no_group_limits,
        "no_group_pool": probe.no_group_pool,
        "hub_id": probe.hub_id,
        "node_name": node_name or "local",
        "gpu_devices": dict(probe.gpu_devices),
        "engine": "swarm" if issubclass(spawner_class, SwarmSpawner) else "docker",
    }
