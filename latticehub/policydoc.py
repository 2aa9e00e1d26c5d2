"""The policy document: one file per deployment with every group's share (pure, stdlib).

For each group it holds the server ceilings, the batch-job limits, the idle rules and the
artifact storage cap, in one vocabulary (``mem_limit``, ``cpu_limit`` and ``gpus`` mean the
same for servers and jobs). The Hub's spawner, the experiments service (jobs, storage), the
quotas service and the culler all read the same file, named by ``$LATTICEHUB_POLICY``
(:data:`POLICY_ENV`). TOML (``.toml``) or JSON (``.json``)::

    version = 1

    [groups.lqcd]
    artifacts = "500G"          # artifact storage of the group's projects

    [groups.lqcd.servers]       # each notebook server, and the group's count of them
    max_servers = 3
    max_servers_per_user = 1
    mem_limit = "8G"
    cpu_limit = 2.0
    gpus = 1

    [groups.lqcd.jobs]          # batch jobs (docker or slurm)
    executors = ["docker", "slurm"]
    max_jobs = 4
    mem_limit = "16G"
    cpu_limit = 4
    time_limit = "4:00:00"

    [groups.lqcd.idle]          # the culler
    idle_timeout = 3600
    max_age = 43200

    [groups."*".jobs]           # every Hub group not listed
    max_jobs = 1

    [no_group]                  # users in no group (absent: refused)
    pool = "no-group"
    servers = { max_servers = 1, mem_limit = "1G" }

    [private]                   # each user's private projects
    artifacts = "10G"

A section left out gives nothing: a group without ``servers`` falls to ``"*"`` for servers,
without ``jobs`` it may not submit jobs (unless ``"*"`` has jobs), without ``artifacts`` its
storage has no cap. Every value is checked by the same parsers the spawner and the services
use, and an error names the place (``groups.lqcd.jobs.mem_limit``) and the fix.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latticehub.joblimits import parse_group_job_limits
from latticehub.limits import LIMIT_KEYS, parse_group_limits
from latticehub.units import parse_bytes

#: The environment variable that names the policy document's path (the one setting).
POLICY_ENV = "LATTICEHUB_POLICY"
#: Versions of the document this release reads.
VERSIONS = (1,)
#: The group name that stands for every Hub group not listed.
UNLISTED = "*"
#: Keys of a group's ``idle`` section (the culler's rules).
IDLE_KEYS = frozenset({"idle_timeout", "idle_timeout_busy", "max_age"})
#: Keys of a group's ``servers`` section.
SERVER_KEYS = LIMIT_KEYS - IDLE_KEYS
#: Keys of a group's table.
GROUP_KEYS = frozenset({"servers", "jobs", "idle", "artifacts"})
_TOP_KEYS = frozenset({"version", "groups", "no_group", "private"})


class PolicyError(ValueError):
    """A policy document that cannot be used; the message names the place and the fix."""


@dataclass(frozen=True)
class GroupSection:
    """One group's share as written in the document (validated; ``None``: not given).

    Attributes:
        servers: the server ceilings (``group_limits`` keys without the idle ones).
        jobs: the job limits (``executors``, ``max_jobs``, ``mem_limit``, ...).
        idle: the culler's rules (``idle_timeout``, ``idle_timeout_busy``, ``max_age``).
        artifacts: the artifact storage cap, as written (e.g. ``"500G"``).
    """

    servers: dict[str, Any] | None = None
    jobs: dict[str, Any] | None = None
    idle: dict[str, Any] | None = None
    artifacts: int | str | None = None

    def server_limits(self) -> dict[str, Any] | None:
        """The spawner's limits dict: the server ceilings with the idle rules."""
        if self.servers is None:
            return None
        return {**self.servers, **(self.idle or {})}


@dataclass(frozen=True)
class PolicyDocument:
    """A parsed, validated policy document.

    Attributes:
        groups: each listed group's share, in the document's order (``"*"``: every
            group not listed).
        no_group: the share of users in no group (``None``: they are refused).
        no_group_pool: the name of that pool, e.g. ``no-group``.
        private_artifacts: the artifact cap of each user's private projects.
        source: where the document was read from (for messages).
    """

    groups: dict[str, GroupSection] = field(default_factory=dict)
    no_group: GroupSection | None = None
    no_group_pool: str = "no-group"
    private_artifacts: int | str | None = None
    source: str = "<policy>"

    # -- the views each reader takes ----------------------------------------------------
    def group_limits(self) -> dict[str, dict[str, Any]]:
        """The spawner's ``group_limits``: listed groups with servers, idle rules included."""
        found = {}
        for name, section in self.groups.items():
            limits = section.server_limits()
            if name != UNLISTED and limits is not None:
                found[name] = limits
        return found

    def unlisted_group_limits(self) -> dict[str, Any] | None:
        """The spawner's ``unlisted_group_limits`` (``"*"``'s servers, or ``None``)."""
        section = self.groups.get(UNLISTED)
        return section.server_limits() if section else None

    def no_group_limits(self) -> dict[str, Any] | None:
        """The spawner's ``no_group_limits`` (``None``: users in no group are refused)."""
        return self.no_group.server_limits() if self.no_group else None

    def spawner_settings(self) -> dict[str, Any]:
        """The four spawner settings the document decides, by trait name."""
        return {
            "group_limits": self.group_limits(),
            "unlisted_group_limits": self.unlisted_group_limits(),
            "no_group_limits": self.no_group_limits(),
            "no_group_pool": self.no_group_pool,
        }

    def job_limits(self) -> dict[str, dict[str, Any]]:
        """The experiments service's ``job_limits`` (``"*"`` included when given)."""
        return {n: dict(s.jobs) for n, s in self.groups.items() if s.jobs is not None}

    def artifact_quotas(self) -> dict[str, int | str]:
        """The experiments service's ``artifact_quota`` (``"*"`` and ``"~"`` included)."""
        caps: dict[str, int | str] = {
            n: s.artifacts for n, s in self.groups.items() if s.artifacts is not None
        }
        if self.private_artifacts is not None:
            caps["~"] = self.private_artifacts
        return caps

    def group_images(self) -> dict[str, str]:
        """Each listed group's first server image (its jobs run from it)."""
        images = {}
        for name, section in self.groups.items():
            listed = (section.servers or {}).get("images")
            if listed:
                images[name] = listed[0]
        return images


# -- parsing ------------------------------------------------------------------------------
def _table(raw: Any, where: str, example: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a table (a JSON object), e.g. {example}")
    return raw


def _unknown(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(raw) - known)
    if unknown:
        raise PolicyError(
            f"{where} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _servers(raw: Any, where: str) -> dict[str, Any]:
    raw = _table(raw, where, '{ max_servers = 2, mem_limit = "4G" }')
    idle = sorted(k for k in raw if k in IDLE_KEYS)
    if idle:
        parent = where.rsplit(".", 1)[0]
        raise PolicyError(f"{where} has {', '.join(idle)}: idle rules go in {parent}.idle")
    _unknown(raw, SERVER_KEYS, where)
    try:
        parse_group_limits(raw, where=where)
    except ValueError as e:
        raise PolicyError(str(e)) from None
    return dict(raw)


def _idle(raw: Any, where: str, servers: Mapping[str, Any] | None) -> dict[str, Any]:
    raw = _table(raw, where, "{ idle_timeout = 3600, max_age = 43200 }")
    _unknown(raw, IDLE_KEYS, where)
    if servers is None:
        parent = where.rsplit(".", 1)[0]
        raise PolicyError(
            f"{where}: idle rules stop servers, but {parent} has no servers section: add "
            f"{parent}.servers or remove {where}"
        )
    try:
        parse_group_limits({**servers, **raw}, where=where)
    except ValueError as e:
        raise PolicyError(str(e)) from None
    return dict(raw)


def _artifacts(raw: Any, where: str) -> int | str:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise PolicyError(f'{where}={raw!r}: give a size such as "500G" or a number of bytes')
    try:
        if parse_bytes(raw, name=where) <= 0:
            raise ValueError(f"{where}={raw!r} must be more than zero")
    except ValueError as e:
        raise PolicyError(f'{e}; e.g. artifacts = "500G"') from None
    return raw


def _group(raw: Any, where: str, *, pool: bool = False) -> GroupSection:
    raw = _table(raw, where, '{ servers = { max_servers = 2 }, artifacts = "100G" }')
    known = frozenset({"pool", "servers", "idle"}) if pool else GROUP_KEYS
    _unknown(raw, known, where)
    servers = _servers(raw["servers"], f"{where}.servers") if "servers" in raw else None
    idle = _idle(raw["idle"], f"{where}.idle", servers) if "idle" in raw else None
    jobs = None
    if "jobs" in raw:
        jobs_raw = _table(raw["jobs"], f"{where}.jobs", '{ max_jobs = 4, mem_limit = "8G" }')
        try:
            parse_group_job_limits(jobs_raw, where=f"{where}.jobs", old_names=False)
        except ValueError as e:
            raise PolicyError(str(e)) from None
        jobs = dict(jobs_raw)
    artifacts = _artifacts(raw["artifacts"], f"{where}.artifacts") if "artifacts" in raw else None
    return GroupSection(servers=servers, jobs=jobs, idle=idle, artifacts=artifacts)


def parse_policy_document(raw: Mapping[str, Any], *, source: str = "<policy>") -> PolicyDocument:
    """Validate a policy document (the parsed TOML or JSON).

    Raises:
        PolicyError: naming the place in the document, the problem and the fix.
    """
    raw = _table(raw, source, '{"groups": {"lqcd": {"servers": {"max_servers": 2}}}}')
    _unknown(raw, _TOP_KEYS, source)
    version = raw.get("version", 1)
    if version not in VERSIONS:
        raise PolicyError(
            f"{source}: version={version!r} is not one this release reads ({VERSIONS}): "
            "write version = 1"
        )
    groups_raw = _table(raw.get("groups", {}), "groups", '{"lqcd": {"servers": {}}}')
    groups = {}
    for name, section in groups_raw.items():
        if not isinstance(name, str) or not name.strip() or name == "~":
            raise PolicyError(
                f"groups has the key {name!r}: use Hub group names, or '*' for every other "
                "group ([private] holds the private projects' cap)"
            )
        groups[name] = _group(section, f"groups.{name}")
    no_group = None
    pool = "no-group"
    if "no_group" in raw:
        no_group = _group(raw["no_group"], "no_group", pool=True)
        pool = raw["no_group"].get("pool", pool)
        if not isinstance(pool, str) or not pool.strip() or pool in groups:
            raise PolicyError(
                f"no_group.pool={pool!r}: give a name that is no group's, e.g. 'no-group'"
            )
        if no_group.servers is None:
            raise PolicyError("no_group needs a servers section (leave no_group out to refuse)")
    private = _table(raw.get("private", {}), "private", '{ artifacts = "10G" }')
    _unknown(private, frozenset({"artifacts"}), "private")
    artifacts = (
        _artifacts(private["artifacts"], "private.artifacts") if "artifacts" in private else None
    )
    return PolicyDocument(
        groups=groups,
        no_group=no_group,
        no_group_pool=pool,
        private_artifacts=artifacts,
        source=source,
    )


def load_policy(path: str | os.PathLike[str]) -> PolicyDocument:
    """Read and validate the policy document at ``path`` (``.toml`` or ``.json``).

    Raises:
        PolicyError: the file is missing, is not TOML/JSON, or has a bad value.
    """
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise PolicyError(f"{path}: name the policy document *.toml or *.json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(
            f"cannot read the policy document {path} ({e.strerror}): set ${POLICY_ENV} to "
            "its path (docs/policy.md)"
        ) from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise PolicyError(f"{path} is not valid {path.suffix[1:].upper()}: {e}") from None
    return parse_policy_document(raw, source=str(path))


def policy_from_env(environ: Mapping[str, str] | None = None) -> PolicyDocument | None:
    """The document named by ``$LATTICEHUB_POLICY`` (``None`` when it is unset or empty)."""
    path = (os.environ if environ is None else environ).get(POLICY_ENV, "").strip()
    return load_policy(path) if path else None
