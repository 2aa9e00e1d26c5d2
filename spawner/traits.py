"""The configurable traits of the group-limited spawners (meaning, unit, example, checks)."""

from __future__ import annotations

import os
import time
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Dict, Float, Unicode, default, validate
from traitlets.config import Configurable
from traitlets.traitlets import TraitError

from latticehub.limits import parse_all_group_limits, parse_group_limits
from latticehub.naming import safe_name
from latticehub.policydoc import POLICY_ENV, PolicyDocument, PolicyError, load_policy


class GroupLimitsConfig(Configurable):
    """Settings shared by ``GroupLimitDockerSpawner`` and ``GroupLimitSwarmSpawner``."""

    policy_file = Unicode(
        help="""
        Path of the deployment's policy document (TOML or JSON; docs/policy.md): each
        group's server ceilings, job limits, idle rules and artifact cap, read by the Hub
        and every service. ``group_limits``, ``unlisted_group_limits``,
        ``no_group_limits`` and ``no_group_pool`` default to its values. Example:
        ``"/etc/latticehub/policy.toml"``. Default: ``$LATTICEHUB_POLICY``; empty: no
        document (the four settings default to nothing: every user is refused).
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

    def policy(self) -> PolicyDocument | None:
        """The policy document of ``policy_file`` (``None``: none is configured)."""
        return load_policy(self.policy_file) if self.policy_file else None

    group_limits = Dict(
        help="""
        Admin-only ceilings per JupyterHub group: group name -> limits. Default: the
        ``servers`` and ``idle`` sections of the policy document (``policy_file``), which is
        where they belong; setting this trait still works, with a deprecation message.

        Keys of each group's dict (all optional):

        - ``max_servers`` (int): servers the group may run at once.
        - ``max_servers_per_user`` (int): servers one user may run charged to the group.
        - ``mem_limit`` (bytes or str such as ``"8G"``, at least ``"64M"``): memory
          ceiling per server; unset: no ceiling.
        - ``cpu_limit`` (float cores, or ``"500m"``, at least 0.01): CPU ceiling per
          server; unset: no ceiling.
        - ``gpus`` (int): GPUs one server may ask for (unset: 0).
        - ``gpu_sharing`` (bool): servers of the group may share GPUs.
        - ``images`` (list of str): images the group may run; unset: the spawner's
          default ``image`` only. Aliases of ``allowed_images`` are resolved to their
          image before this check.
        - ``nodes`` (list of str): nodes the group's servers may run on (Swarm).
        - ``constraints`` (list of str): extra Swarm placement constraints.
        - ``home`` (str): volume name or absolute host path template for homes.
        - ``shared_dir`` (str): volume name or host path of the group's shared directory.
        - ``shared_readonly`` (bool): mount the shared directory read-only.
        - ``run_as_user`` (bool): run as the user's own uid/gid (host passwd).
        - ``idle_timeout`` (int seconds > 0): the ``culler`` service stops a server idle
          this long (docs/culling.md); unset: never culled for idleness.
        - ``idle_timeout_busy`` (int seconds, <= ``idle_timeout``): used instead while the
          group holds at least 80% of its ``max_servers``.
        - ``max_age`` (int seconds, 0 = none): stopped this long after its start, active
          or not.

        Templates may use ``{username}`` and ``{group}``. Group managers may *lower*
        values through the group's properties (key ``latticehub``), never raise them nor
        go below the floors (64M memory, 0.01 CPU per server; docs/limits.md).
        The order of the groups is the order in which a user's default group is chosen.

        .. versionchanged:: 0.2
            ``mem_limit`` below 64M and ``cpu_limit`` below 0.01 are refused; a group
            without ``images`` runs the default ``image`` only (before: any image).

        Example::

            c.GroupLimitDockerSpawner.group_limits = {
                "lqcd": {"max_servers": 3, "max_servers_per_user": 1,
                         "mem_limit": "8G", "cpu_limit": 2.0, "gpus": 1},
                "nuclear": {"max_servers": 2},
            }
        """,
    ).tag(config=True)

    @default("group_limits")
    def _default_group_limits(self) -> dict:
        document = self.policy()
        return document.group_limits() if document else {}

    @validate("group_limits")
    def _validate_group_limits(self, proposal: Any) -> dict:
        try:
            parse_all_group_limits(proposal.value)
        except ValueError as e:
            raise TraitError(f"{e}. See the group_limits help for the accepted keys.") from e
        return proposal.value

    unlisted_group_limits = Dict(
        default_value=None,
        allow_none=True,
        help="""
        Limits for each JupyterHub group that is not in ``group_limits``.

        ``None``: such groups cannot be charged. A dict (same keys as in
        ``group_limits``) gives every unlisted group its own pool with these limits,
        e.g. ``{"max_servers": 1}``. Default: the policy document's ``groups."*"``
        servers, else ``None``.
        """,
    ).tag(config=True)

    @default("unlisted_group_limits")
    def _default_unlisted(self) -> dict | None:
        document = self.policy()
        return document.unlisted_group_limits() if document else None

    no_group_limits = Dict(
        default_value=None,
        allow_none=True,
        help="""
        Limits for users who are in no chargeable group, who share one pool named by
        ``no_group_pool``.

        ``None``: such users are refused (HTTP 403) with a message that tells them to ask
        for a group. A dict, e.g. ``{"max_servers": 2, "mem_limit": "2G"}``, lets them in
        with these limits. Default: the policy document's ``no_group`` servers, else
        ``None``.
        """,
    ).tag(config=True)

    @default("no_group_limits")
    def _default_no_group(self) -> dict | None:
        document = self.policy()
        return document.no_group_limits() if document else None

    @validate("unlisted_group_limits", "no_group_limits")
    def _validate_optional_limits(self, proposal: Any) -> dict | None:
        if proposal.value is None:
            return None
        try:
            parse_group_limits(proposal.value, where=proposal.trait.name)
        except ValueError as e:
            raise TraitError(str(e)) from e
        return proposal.value

    no_group_pool = Unicode(
        help="""
        Pool name (in labels, metrics and messages) of users in no chargeable group.
        Default: the policy document's ``no_group.pool``, else ``no-group``.
        """,
    ).tag(config=True)

    @default("no_group_pool")
    def _default_no_group_pool(self) -> str:
        document = self.policy()
        return document.no_group_pool if document else "no-group"

    hub_id = Unicode(
        help="""
        Identifies this hub in container labels, so that the ledger is rebuilt only from
        this hub's containers. Default: ``$LATTICEHUB_HUB_ID`` or ``latticehub``.
        Give each hub sharing one Docker engine its own id, e.g. ``"prod"``.
        """,
    ).tag(config=True)

    @default("hub_id")
    def _default_hub_id(self) -> str:
        return os.environ.get("LATTICEHUB_HUB_ID", "latticehub")

    @validate("hub_id")
    def _validate_hub_id(self, proposal: Any) -> str:
        if not proposal.value or safe_name(proposal.value) != proposal.value:
            raise TraitError(
                f"hub_id={proposal.value!r}: use letters, digits, '.', '_' or '-', e.g. 'prod'"
            )
        return proposal.value

    gpu_devices = Dict(
        help="""
        GPU device ids per node, from which servers get specific GPUs:
        node name -> list of ids, e.g. ``{"local": ["0", "1"]}`` for the local engine
        (node ``node_name``) or ``{"gpu01": ["0", "1", "2", "3"]}`` per Swarm node.
        Assignments are stored in labels and survive Hub restarts. Empty: no GPUs.
        """,
    ).tag(config=True)

    @validate("gpu_devices")
    def _validate_gpu_devices(self, proposal: Any) -> dict:
        for node, ids in proposal.value.items():
            if isinstance(ids, str) or not all(isinstance(i, str | int) for i in ids):
                raise TraitError(
                    f"gpu_devices[{node!r}]={ids!r}: give a list of device ids, e.g. ['0', '1']"
                )
        return {node: [str(i) for i in ids] for node, ids in proposal.value.items()}

    spawn_queue_timeout = Float(
        0.0,
        help="""
        Seconds a spawn waits for a free slot of its group instead of failing at once
        with HTTP 429 (0, the default: no waiting). Waiting spawns are served first come,
        first served and see their position in the spawn progress, e.g. ``120``.
        Keep it below ``start_timeout``.
        """,
    ).tag(config=True)

    @validate("spawn_queue_timeout")
    def _validate_queue_timeout(self, proposal: Any) -> float:
        if proposal.value < 0:
            raise TraitError("spawn_queue_timeout must be >= 0 seconds (0 disables the queue)")
        return proposal.value

    home_volume = Unicode(
        "latticehub-home-{username}",
        help="""
        Persistent home of each user, mounted at ``home_mount_point``: a Docker volume
        name template, or an absolute host path template on the shared filesystem, e.g.
        ``/gpfs/home/{username}``. A group's ``home`` limit overrides it. Empty: no home.
        """,
    ).tag(config=True)

    home_mount_point = Unicode(
        "/home/jovyan", help="Where the home is mounted inside the container."
    ).tag(config=True)

    shared_mount_point = Unicode(
        "/srv/group",
        help="""
        Where the group's ``shared_dir`` is mounted inside the container. The image
        creates it owned by the notebook user so that a new Docker volume is writable.
        """,
    ).tag(config=True)

    orphan_report_delay = Float(
        60.0,
        help="""
        Seconds after the ledger is rebuilt at Hub start before containers that no Hub
        server owns are reported as orphans (log warning and metric). They still count
        against their group's limits until removed.
        """,
    ).tag(config=True)

    clock = AnyTrait(help="Seam for tests: a monotonic clock, default time.monotonic.")

    @default("clock")
    def _default_clock(self) -> Any:
        return time.monotonic
