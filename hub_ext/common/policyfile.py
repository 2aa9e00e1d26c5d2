"""The ``policy_file`` setting every service shares: where the deployment's policy document is.

Each service mixes :class:`PolicyFileConfig` into its application (or configurable) and reads
the groups' shares from the one document the Hub's spawner reads too
(:mod:`latticehub.policydoc`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from traitlets import Unicode, default, validate
from traitlets.config import Configurable
from traitlets.traitlets import TraitError

from latticehub.policy import (
    POLICY_ENV,
    Policy,
    PolicyDocument,
    PolicyError,
    load_policy,
    service_policy,
    uses_old_spelling,
)

log = logging.getLogger("latticehub.policy")


class PolicyFileConfig(Configurable):
    """The ``policy_file`` trait and its document; with ``policy``, a service's whole policy.

    A service sets :attr:`policy_env`, the variable its ``install`` fills with the Hub's
    deployment facts (e.g. ``LATTICEHUB_QUOTAS_POLICY``), and calls :meth:`service_policy`.
    """

    #: The environment variable that holds the service's ``policy`` JSON.
    policy_env = ""

    policy_file = Unicode(
        help="""
        Path of the deployment's policy document (TOML or JSON; docs/policy.md), the same
        file the Hub's spawner reads: each group's server ceilings, job limits, idle rules and
        artifact cap. Example: ``"/etc/latticehub/policy.toml"``. Default:
        ``$LATTICEHUB_POLICY`` (``jupyterhub_config.py`` passes it to every service); empty:
        no document.
        """,
    ).tag(config=True)

    @default("policy_file")
    def _default_policy_file(self) -> str:
        return os.environ.get(POLICY_ENV, "")

    @validate("policy_file")
    def _validate_policy_file(self, proposal: Any) -> str:
        if proposal.value:
            try:
                load_policy(proposal.value)
            except PolicyError as e:
                raise TraitError(f"policy_file: {e}") from e
        return proposal.value

    def policy_document(self) -> PolicyDocument | None:
        """The document of ``policy_file`` (``None``: none is configured)."""
        return load_policy(self.policy_file) if self.policy_file else None

    policy = Unicode(
        help="""
        The Hub's deployment facts as JSON, which the service's ``install`` writes from the
        Hub's configuration: ``hub_id``, ``node_name``, ``gpu_devices`` (node -> GPU ids),
        ``engine`` (``docker`` or ``swarm``). The groups' shares come from ``policy_file``;
        the old spelling, ``group_limits``, ``unlisted_group_limits``, ``no_group_limits``
        and ``no_group_pool`` in this JSON, still works and wins over the document
        (deprecated). Default: the service's environment variable (e.g.
        ``$LATTICEHUB_QUOTAS_POLICY``).
        """,
    ).tag(config=True)

    @default("policy")
    def _default_policy(self) -> str:
        return os.environ.get(self.policy_env, "") if self.policy_env else ""

    @validate("policy")
    def _validate_policy(self, proposal: Any) -> str:
        try:
            service_policy(proposal.value, None)
        except ValueError as e:
            raise TraitError(f"policy: {e}") from e
        return proposal.value

    def service_policy(self) -> Policy:
        """The policy this service enforces or shows: the document with the deployment facts.

        Raises:
            PolicyError: the document cannot be read or has a bad value.
        """
        if uses_old_spelling(self.policy):
            deprecated_setting(
                f"group settings in ${self.policy_env or 'policy'}",
                f"write them in the policy document (${POLICY_ENV})",
            )
        return service_policy(self.policy, self.policy_document())


def deprecated_setting(old: str, new: str) -> None:
    """Log, once per process and setting, that an old spelling was used and what replaces it."""
    if old in _warned:
        return
    _warned.add(old)
    log.warning("%s is deprecated: %s (docs/policy.md)", old, new)


_warned: set[str] = set()
