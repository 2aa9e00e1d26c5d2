"""What every service's ``install`` reads from the Hub's configuration (at config time).

:func:`policy_document` resolves the spawner's limit settings as traitlets would, so that the
quotas and culling services get the same policy the spawner enforces
(:mod:`latticehub.policy` parses it). :func:`service_policy_env` is what a service's
environment carries: the path of the policy document (``$LATTICEHUB_POLICY``), which the
service reads itself, and the Hub's deployment facts as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from traitlets.config import Config

from latticehub.policy import GROUP_SETTINGS, POLICY_ENV


def policy_document(config: Config, spawner_class: type) -> dict[str, Any]:
    """The spawner's limit settings, resolved as traitlets would (see :func:`_resolve`)."""
    return _resolve(config, spawner_class)[0]


def _resolve(config: Config, spawner_class: type) -> tuple[dict[str, Any], str, list[str]]:
    """The spawner's limit settings for ``spawner_class``, its policy file, the traits set.

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
    explicit = sorted(k for k in GROUP_SETTINGS if k in section)
    node_name = merged.get("node_name")
    if not isinstance(node_name, str):
        traits: dict[str, Any] = spawner_class.class_traits()  # type: ignore[attr-defined]
        trait = traits.get("node_name")
        node_name = trait.default_value if trait is not None else "local"
    resolved = {
        "group_limits": dict(probe.group_limits),
        "unlisted_group_limits": probe.unlisted_group_limits,
        "no_group_limits": probe.no_group_limits,
        "no_group_pool": probe.no_group_pool,
        "hub_id": probe.hub_id,
        "node_name": node_name or "local",
        "gpu_devices": dict(probe.gpu_devices),
        "engine": "swarm" if issubclass(spawner_class, SwarmSpawner) else "docker",
    }
    return resolved, probe.policy_file, explicit


def config_list(section: Any, key: str) -> list[Any]:
    """A list setting of a config section, e.g. ``c.JupyterHub.services`` (empty when unset).

    An unset setting reads as a ``LazyConfigValue``, which is neither a list nor falsy.
    """
    return list(section[key]) if key in section else []


def config_dict(section: Any, key: str) -> dict[str, Any]:
    """A dict setting of a config section (empty when unset)."""
    return dict(section[key]) if key in section else {}


#: Keys of :func:`policy_document` that are facts of the deployment, not of the groups.
DEPLOYMENT_KEYS = ("hub_id", "node_name", "gpu_devices", "engine")


def service_policy_env(config: Config, spawner_class: type, json_env: str) -> dict[str, str]:
    """A service's environment for its policy: the document's path and the deployment JSON.

    Group settings set as spawner traits in the config (the old spelling) go into the JSON as
    well, where they win over the document, and a deprecation message is printed.

    Args:
        config: the Hub's config.
        spawner_class: the Hub's spawner class.
        json_env: the service's variable for the JSON, e.g. ``LATTICEHUB_QUOTAS_POLICY``.
    """
    resolved, policy_file, explicit = _resolve(config, spawner_class)
    carried = {k: resolved[k] for k in DEPLOYMENT_KEYS}
    if explicit or not policy_file:
        carried.update({k: resolved[k] for k in GROUP_SETTINGS})
    if explicit:
        print(
            f"latticehub: {spawner_class.__name__}.{', '.join(explicit)} set in the "
            "config is deprecated: write the groups' shares in the policy document "
            f"(${POLICY_ENV}, docs/policy.md); these values win over it for now",
            file=sys.stderr,
        )
    env = {json_env: json.dumps(carried)}
    if policy_file:
        env[POLICY_ENV] = policy_file
    return env
