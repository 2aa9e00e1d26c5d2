"""Per-group limits: validation, lowering by group properties, group choice, requests.

Everything here is pure (no I/O, no JupyterHub objects) so that it can be tested with
tables. The spawner turns :class:`LimitError` into a ``SpawnException``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .units import format_bytes, format_cpu, parse_bytes, parse_cpu

#: Smallest memory limit per server, in bytes (64M), wherever a value enters: the admin's
#: ``group_limits``, a manager's group properties, the user's options and the spawner's own
#: default. Docker refuses less than 6M and reads 0 as "no limit"; no notebook server fits
#: in this much (its imports alone peak near 120M), so a smaller value is a typo (``64``
#: meant as megabytes) or an attempt to reach Docker's "unlimited".
MIN_MEMORY = 64 * 1024**2

#: Smallest CPU limit per server, in cores: Docker's own minimum for ``--cpus`` and, at the
#: default CFS period of 100 ms, its smallest CPU quota (1 ms).
MIN_CPU = 0.01

#: Key of a group's JupyterHub ``properties`` where managers lower their group's values.
PROPERTIES_KEY = "latticehub"


class LimitError(Exception):
    """A spawn refused by policy.

    Attributes:
        status_code: the HTTP status for the Hub's REST API (400, 403 or 429).
        reason: a short label for metrics (``group_full``, ``image`` ...).
        message: what the user reads: names the group, the limit and the fix.
    """

    def __init__(self, status_code: int, reason: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class GroupLimits:
    """The limits of one group (all optional: ``None`` means "no limit").

    Attributes:
        max_servers: servers the group may run at once.
        max_servers_per_user: servers one user may run at once when charging the group.
        mem_limit: memory ceiling per server, bytes.
        cpu_limit: CPU ceiling per server, cores.
        gpus: GPUs one server may request (unset means 0: GPUs are opt-in per group).
        gpu_sharing: whether the group's servers may share a GPU with other sharing servers.
        images: images the group may run (``None``: the spawner's default ``image`` only).
        nodes: nodes (Swarm node hostnames) the group's servers may run on.
        constraints: extra Swarm placement constraints, e.g. ``node.labels.ib==true``.
        home: volume name or host path template for the user's home (``{username}``).
        shared_dir: volume name or host path template for the group's shared directory.
        shared_readonly: mount the shared directory read-only.
        run_as_user: run the container with the user's own uid/gid from the host's passwd.
        idle_timeout: seconds a server may stay idle before the culler stops it
            (docs/culling.md; the spawner itself does not read it).
        idle_timeout_busy: the shorter idle timeout, seconds, while the group runs at least
            the culler's busy fraction of ``max_servers``.
        max_age: seconds after its start when the culler stops a server even if it is active.
    """

    max_servers: int | None = None
    max_servers_per_user: int | None = None
    mem_limit: int | None = None
    cpu_limit: float | None = None
    gpus: int | None = None
    gpu_sharing: bool = False
    images: tuple[str, ...] | None = None
    nodes: tuple[str, ...] | None = None
    constraints: tuple[str, ...] = ()
    home: str | None = None
    shared_dir: str | None = None
    shared_readonly: bool = False
    run_as_user: bool = False
    idle_timeout: int | None = None
    idle_timeout_busy: int | None = None
    max_age: int | None = None

    def describe(self) -> str:
        """One line for logs and messages, e.g. ``max_servers=3, mem_limit=8G``."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value in (None, (), False):
                continue
            if f.name == "mem_limit":
                value = format_bytes(value)
            elif f.name == "cpu_limit":
                value = format_cpu(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            parts.append(f"{f.name}={value}")
        return ", ".join(parts) or "no limits"


LIMIT_KEYS = frozenset(f.name for f in dataclasses.fields(GroupLimits))
#: Keys a group manager may lower through the group's properties (storage stays admin-only).
LOWERABLE_KEYS = frozenset(
    {
        "max_servers",
        "max_servers_per_user",
        "mem_limit",
        "cpu_limit",
        "gpus",
        "gpu_sharing",
        "images",
        "nodes",
        "shared_readonly",
    }
)


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}={value!r} must be a whole number >= 0, e.g. {key}=3")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{key}={value!r} must be a list of names, e.g. {key}=['a', 'b']")
    names = tuple(value)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{key}={value!r} must hold non-empty strings only")
    return names


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}={value!r} must be true or false")
    return value


def _template(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}={value!r} must be a volume name or an absolute host path")
    return value


def _seconds(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key}={value!r} must be a whole number of seconds > 0, e.g. {key}=3600")
    return value


def _max_age(value: Any, key: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{key}={value!r} must be a whole number of seconds >= 0 (0: no maximum age), "
            f"e.g. {key}=86400"
        )
    return value or None


def _memory(value: Any, key: str) -> int:
    size = parse_bytes(value, name=key)
    if size < MIN_MEMORY:
        raise ValueError(
            f"{key}={value!r} is below the floor of {format_bytes(MIN_MEMORY)} per server "
            f"(docs/limits.md): give at least {format_bytes(MIN_MEMORY)}, e.g. {key}='2G'; "
            "leave the key out for no memory limit"
        )
    return size


def _cores(value: Any, key: str) -> float:
    cores = parse_cpu(value, name=key)
    if cores < MIN_CPU:
        raise ValueError(
            f"{key}={value!r} is below the floor of {format_cpu(MIN_CPU)} CPU per server "
            f"(docs/limits.md): give at least {format_cpu(MIN_CPU)}, e.g. {key}=0.5"
        )
    return cores


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "max_servers": _count,
    "max_servers_per_user": _count,
    "mem_limit": _memory,
    "cpu_limit": _cores,
    "gpus": _count,
    "gpu_sharing": _flag,
    "images": _names,
    "nodes": _names,
    "constraints": _names,
    "home": _template,
    "shared_dir": _template,
    "shared_readonly": _flag,
    "run_as_user": _flag,
    "idle_timeout": _seconds,
    "idle_timeout_busy": _seconds,
    "max_age": _max_age,
}


def parse_group_limits(raw: Mapping[str, Any], *, where: str = "group_limits") -> GroupLimits:
    """Validate one group's limits dict into a :class:`GroupLimits`.

    Raises:
        ValueError: naming the bad key or value and what to write instead.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict such as {{'max_servers': 3}}, not {raw!r}")
    unknown = sorted(set(raw) - LIMIT_KEYS)
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(LIMIT_KEYS))}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        try:
            values[key] = _PARSERS[key](value, key)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    idle, busy = values.get("idle_timeout"), values.get("idle_timeout_busy")
    if idle is not None and busy is not None and busy > idle:
        raise ValueError(
            f"{where}: idle_timeout_busy={busy!r} must be <= idle_timeout={idle!r} (it is the "
            f"shorter timeout of a busy group), e.g. idle_timeout_busy={max(idle // 4, 1)}"
        )
    return GroupLimits(**values)


def parse_all_group_limits(raw: Mapping[str, Any]) -> dict[str, GroupLimits]:
    """Validate the whole ``group_limits`` trait (group name -> limits dict)."""
    if not isinstance(raw, Mapping):
        raise ValueError("group_limits must be a dict of group name -> limits dict")
    return {
        str(name): parse_group_limits(limits, where=f"group_limits[{name!r}]")
        for name, limits in raw.items()
    }


def _lower_number(ceiling: float | None, wanted: float) -> float:
    return wanted if ceiling is None else min(ceiling, wanted)


def _lower_names(ceiling: tuple[str, ...] | None, wanted: tuple[str, ...]) -> tuple[str, ...]:
    if ceiling is None:
        return wanted
    allowed = set(ceiling)
    return tuple(n for n in wanted if n in allowed)


def apply_properties(
    ceiling: GroupLimits, properties: Mapping[str, Any] | None
) -> tuple[GroupLimits, list[str]]:
    """Lower a group's ceiling with the values a manager put in the group's properties.

    Only :data:`LOWERABLE_KEYS` are honoured and a value can never rise above the
    ceiling: numbers take the minimum, lists the intersection, and flags may only move
    to the stricter side (``gpu_sharing`` off, ``shared_readonly`` on). Values below the
    floors (:data:`MIN_MEMORY`, :data:`MIN_CPU`) are ignored like any malformed value,
    and so are ``images`` for a ceiling without an images list (which means the
    spawner's default image only; the spawner fills it in before calling this, see
    :func:`with_default_image`).

    Args:
        ceiling: the admin-configured limits.
        properties: the group's whole ``properties`` dict; the ``latticehub`` key is read.

    Returns:
        The effective limits and a list of warnings for values that were ignored.
    """
    lowered = (properties or {}).get(PROPERTIES_KEY) or {}
    if not isinstance(lowered, Mapping):
        return ceiling, [f"properties[{PROPERTIES_KEY!r}] is not a dict; ignored"]
    warnings: list[str] = []
    changes: dict[str, Any] = {}
    for key, raw in lowered.items():
        if key not in LOWERABLE_KEYS:
            warnings.append(f"{key!r} cannot be set through group properties; ignored")
            continue
        if raw is None:
            continue
        try:
            value = _PARSERS[key](raw, key)
        except ValueError as e:
            warnings.append(f"{e}; ignored")
            continue
        current = getattr(ceiling, key)
        if key == "images" and current is None:
            # no list means the admin's default image only: nothing a manager could pick
            warnings.append(
                "'images' cannot be set for a group without an images list in group_limits "
                "(it runs the spawner's default image only); ignored"
            )
            continue
        if key in ("images", "nodes"):
            changes[key] = _lower_names(current, value)
        elif key == "gpu_sharing":
            changes[key] = current and value
        elif key == "shared_readonly":
            changes[key] = current or value
        elif key == "gpus":
            # an unset GPU ceiling means 0 GPUs, not "unlimited": managers cannot add GPUs
            changes[key] = min(current or 0, value)
        else:
            new = _lower_number(current, value)
            changes[key] = type(value)(new)
    return dataclasses.replace(ceiling, **changes), warnings


@dataclass(frozen=True)
class GroupChoice:
    """The group (pool) a spawn is charged to."""

    pool: str
    limits: GroupLimits
    chargeable: tuple[str, ...] = field(default=())


def chargeable_groups(
    user_groups: Sequence[str],
    group_limits: Mapping[str, GroupLimits],
    unlisted_limits: GroupLimits | None,
) -> list[str]:
    """Groups a user may charge, in the admin's order of ``group_limits`` first.

    Groups not in ``group_limits`` are chargeable only when ``unlisted_limits`` is set.
    """
    mine = set(user_groups)
    ordered = [g for g in group_limits if g in mine]
    if unlisted_limits is not None:
        ordered += sorted(g for g in mine if g not in group_limits)
    return ordered


def choose_group(
    *,
    user: str,
    user_groups: Sequence[str],
    requested: str | None,
    group_limits: Mapping[str, GroupLimits],
    unlisted_limits: GroupLimits | None,
    no_group_limits: GroupLimits | None,
    no_group_pool: str,
) -> GroupChoice:
    """Pick the group to charge for a spawn.

    Args:
        user: the user's name (for messages).
        user_groups: names of the user's JupyterHub groups.
        requested: ``user_options["group"]`` if given.
        group_limits: parsed admin ceilings.
        unlisted_limits: limits for groups not in ``group_limits`` (``None``: such
            groups cannot be charged).
        no_group_limits: limits for users with no chargeable group (``None``: deny).
        no_group_pool: the pool name those users share.

    Raises:
        LimitError: 403 for a group the user is not in or that cannot be charged.
    """
    chargeable = chargeable_groups(user_groups, group_limits, unlisted_limits)

    def limits_of(group: str) -> GroupLimits:
        return group_limits.get(group) or unlisted_limits or GroupLimits()

    if requested:
        if requested in chargeable:
            return GroupChoice(requested, limits_of(requested), tuple(chargeable))
        if requested not in user_groups:
            offer = ", ".join(chargeable) or "none"
            raise LimitError(
                403,
                "foreign_group",
                f"{user} is not a member of group {requested!r}. Choose one of your groups "
                f"({offer}) in the 'group' field.",
            )
        raise LimitError(
            403,
            "group_not_chargeable",
            f"Group {requested!r} has no share of the servers. Choose one of "
            f"({', '.join(chargeable) or 'none'}) or ask an admin to add {requested!r} to "
            "group_limits.",
        )
    if chargeable:
        return GroupChoice(chargeable[0], limits_of(chargeable[0]), tuple(chargeable))
    if no_group_limits is not None:
        return GroupChoice(no_group_pool, no_group_limits, ())
    raise LimitError(
        403,
        "no_group",
        f"{user} is in no group with a share of the servers. Ask an admin to add you to a "
        "group listed in group_limits.",
    )


@dataclass(frozen=True)
class ServerRequest:
    """What one spawn asks for, after defaults and checks against the group's limits."""

    image: str
    mem_limit: int | None
    cpu_limit: float | None
    gpus: int = 0


#: DockerSpawner's ``allowed_images`` after evaluation: alias -> image, a list of images
#: (each its own alias), ``"*"`` or empty/``None`` (no spawner-level list).
AllowedImages = Mapping[str, str] | Sequence[str] | None


def _option(options: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = options.get(name)
        if value not in (None, ""):
            return value
    return None


def image_aliases(allowed_images: AllowedImages) -> dict[str, str] | None:
    """DockerSpawner's ``allowed_images`` as a dict alias -> image name.

    A list maps each image to itself. ``"*"``, an empty list or dict and ``None`` mean
    that the spawner keeps no list of its own (``None``); the group's ``images`` alone
    then name what a user may pick.

    Raises:
        ValueError: for a value that is neither, naming the accepted forms.

    >>> image_aliases({"stable": "lab/nb:1.2"})
    {'stable': 'lab/nb:1.2'}
    >>> image_aliases(["lab/nb:1.2"])
    {'lab/nb:1.2': 'lab/nb:1.2'}
    """
    if allowed_images is None or allowed_images == "*":
        return None
    if isinstance(allowed_images, Mapping):
        pairs = list(allowed_images.items())
    elif isinstance(allowed_images, str) or not isinstance(allowed_images, Iterable):
        raise ValueError(
            f"allowed_images={allowed_images!r} must be a list of images, a dict alias -> "
            "image or '*', e.g. {'stable': 'latticehub/singleuser:latest'}"
        )
    else:
        pairs = [(image, image) for image in allowed_images]
    for alias, image in pairs:
        if not (isinstance(alias, str) and alias and isinstance(image, str) and image):
            raise ValueError(
                f"allowed_images entry {alias!r} -> {image!r}: aliases and images must be "
                "non-empty strings, e.g. {'stable': 'latticehub/singleuser:latest'}"
            )
    return dict(pairs) or None


def with_default_image(limits: GroupLimits, default_image: str) -> GroupLimits:
    """Deny by default: a group without an ``images`` list may run the default image only.

    >>> with_default_image(GroupLimits(), "lab/nb:1").images
    ('lab/nb:1',)
    >>> with_default_image(GroupLimits(images=()), "lab/nb:1").images
    ()
    """
    if limits.images is not None:
        return limits
    return dataclasses.replace(limits, images=(default_image,))


def image_choices(
    limits: GroupLimits, allowed_images: AllowedImages, default_image: str
) -> dict[str, str]:
    """What a user of a group may send as ``image``, each with the image it runs.

    Aliases are resolved before the check, so an alias is a choice only when the image
    it names is in the group's list (the default image alone for a group without one):
    an alias can never carry an unlisted image past that list.

    Without a spawner-level ``allowed_images`` the choices are the group's images. With
    one, they are its aliases whose image the group lists, plus the default image itself
    when the group lists it (sending it is the same as sending nothing).

    Returns:
        Choice -> image, the default image's choice first.

    >>> image_choices(GroupLimits(images=("a",)), {"ok": "a", "sneaky": "b"}, "a")
    {'a': 'a', 'ok': 'a'}
    >>> image_choices(GroupLimits(), None, "a")
    {'a': 'a'}
    """
    listed = with_default_image(limits, default_image).images or ()
    aliases = image_aliases(allowed_images)
    if aliases is None:
        choices = {image: image for image in listed}
    else:
        choices = {alias: image for alias, image in aliases.items() if image in listed}
        if default_image in listed and default_image not in aliases:
            choices[default_image] = default_image
    first = [c for c in choices if c == default_image]
    return {c: choices[c] for c in first + [c for c in choices if c != default_image]}


def resolve_image(
    *,
    group: str,
    limits: GroupLimits,
    requested: Any,
    default_image: str,
    allowed_images: AllowedImages,
) -> str:
    """The image a spawn runs: the requested choice resolved, or the default image.

    Args:
        group: the charged group (for messages).
        limits: the group's effective limits (``images=None``: the default image only).
        requested: ``user_options["image"]`` (``None`` or ``""``: the default image).
        default_image: the spawner's ``image``.
        allowed_images: the spawner's ``allowed_images`` (see :func:`image_aliases`).

    Raises:
        LimitError: 400 for a value that is not a name, 403 for an image (or an alias of
            one) that the group may not run, naming what it may choose.
    """
    choices = image_choices(limits, allowed_images, default_image)
    offer = ", ".join(choices) or "none"
    fix = (
        "Choose one of them in the 'image' field, or ask an admin to add the image to the "
        "group's images in group_limits."
    )
    if requested in (None, ""):
        if default_image in (with_default_image(limits, default_image).images or ()):
            return default_image
        raise LimitError(
            403,
            "image",
            f"The default image {default_image!r} is not allowed for group {group!r}. "
            f"Allowed: {offer}. {fix}",
        )
    if not isinstance(requested, str):
        raise LimitError(
            400, "bad_option", f"image={requested!r} must be an image name, e.g. {offer}"
        )
    if requested in choices:
        return choices[requested]
    aliases = image_aliases(allowed_images) or {}
    target = aliases.get(requested)
    shown = (
        f"{requested!r} (an alias of {target!r})"
        if target is not None and target != requested
        else repr(requested)
    )
    raise LimitError(
        403,
        "image",
        f"Image {shown} is not allowed for group {group!r}. Allowed: {offer}. {fix}",
    )


def _check_default(trait: str, value: float, floor: float, show: Callable[[Any], str]) -> None:
    """Refuse a spawner default (admin configuration) below a floor, naming the fix."""
    if value < floor:
        raise LimitError(
            500,
            "config",
            f"The spawner's default {trait}={show(value)} is below the floor of "
            f"{show(floor)} per server (docs/limits.md). An admin must set "
            f"{trait} to at least {show(floor)}, or to 0 to use each group's ceiling.",
        )


def resolve_request(
    *,
    group: str,
    limits: GroupLimits,
    options: Mapping[str, Any],
    default_image: str,
    allowed_images: AllowedImages,
    default_mem: int | None,
    default_cpu: float | None,
) -> ServerRequest:
    """Turn user options and spawner defaults into a request that fits the group's caps.

    An explicit user request above a cap or below a floor (:data:`MIN_MEMORY`,
    :data:`MIN_CPU`) is refused (400) so that nobody silently gets other than asked for;
    spawner defaults above a cap are clamped to it.

    Args:
        group: the charged group (for messages).
        limits: the group's effective limits.
        options: ``user_options`` (``image``, ``mem_limit``, ``cpu_limit``, ``gpus``).
        default_image: the spawner's ``image``.
        allowed_images: the spawner's ``allowed_images`` (see :func:`image_aliases`).
        default_mem: the spawner's ``mem_limit`` in bytes, if any.
        default_cpu: the spawner's ``cpu_limit``, if any.

    Raises:
        LimitError: 400 for a malformed, too large or too small request, 403 for a
            disallowed image, 500 for a spawner default below a floor.
    """
    # Spawner traits use 0 for "no limit"; Docker reads 0 the same way, so a 0 default
    # must not get past a group's cap
    default_mem = default_mem or None
    default_cpu = default_cpu or None
    if default_mem is not None:
        _check_default("mem_limit", default_mem, MIN_MEMORY, format_bytes)
    if default_cpu is not None:
        _check_default("cpu_limit", default_cpu, MIN_CPU, format_cpu)
    image = resolve_image(
        group=group,
        limits=limits,
        requested=options.get("image"),
        default_image=default_image,
        allowed_images=allowed_images,
    )

    mem = default_mem
    raw_mem = _option(options, "mem_limit", "mem")
    if raw_mem is not None:
        try:
            mem = parse_bytes(raw_mem)
        except ValueError as e:
            raise LimitError(400, "bad_option", str(e)) from None
        if mem < MIN_MEMORY:
            # Docker reads 0 as "no limit": never let a tiny value slip past the cap
            raise LimitError(
                400,
                "mem_limit",
                f"Memory {raw_mem!r} is below the floor of {format_bytes(MIN_MEMORY)} per "
                f"server: ask for at least {format_bytes(MIN_MEMORY)}, e.g. '2G', or leave "
                "the field empty for the group's default.",
            )
        if limits.mem_limit is not None and mem > limits.mem_limit:
            raise LimitError(
                400,
                "mem_limit",
                f"Memory {format_bytes(mem)} is above group {group!r}'s limit of "
                f"{format_bytes(limits.mem_limit)} per server. Ask for at most "
                f"{format_bytes(limits.mem_limit)}.",
            )
    if limits.mem_limit is not None and (mem is None or mem > limits.mem_limit):
        mem = limits.mem_limit

    cpu = default_cpu
    raw_cpu = _option(options, "cpu_limit", "cpu")
    if raw_cpu is not None:
        try:
            cpu = parse_cpu(raw_cpu)
        except ValueError as e:
            raise LimitError(400, "bad_option", str(e)) from None
        if cpu < MIN_CPU:
            raise LimitError(
                400,
                "cpu_limit",
                f"CPUs {raw_cpu!r} is below the floor of {format_cpu(MIN_CPU)} CPU per "
                f"server: ask for at least {format_cpu(MIN_CPU)}, e.g. 0.5, or leave the "
                "field empty for the group's default.",
            )
        if limits.cpu_limit is not None and cpu > limits.cpu_limit:
            raise LimitError(
                400,
                "cpu_limit",
                f"{format_cpu(cpu)} CPUs is above group {group!r}'s limit of "
                f"{format_cpu(limits.cpu_limit)} per server. Ask for at most "
                f"{format_cpu(limits.cpu_limit)}.",
            )
    if limits.cpu_limit is not None and (cpu is None or cpu > limits.cpu_limit):
        cpu = limits.cpu_limit

    gpus = 0
    raw_gpus = _option(options, "gpus")
    if raw_gpus is not None:
        try:
            gpus = int(raw_gpus)
            if gpus < 0 or str(raw_gpus).strip() not in (str(gpus), f"{gpus}.0"):
                raise ValueError
        except (TypeError, ValueError):
            raise LimitError(
                400, "bad_option", f"gpus={raw_gpus!r} must be a whole number >= 0"
            ) from None
        cap = limits.gpus or 0
        if gpus > cap:
            raise LimitError(
                400,
                "gpus",
                f"{gpus} GPU(s) is above group {group!r}'s limit of {cap} per server. "
                f"Ask for at most {cap}.",
            )
    return ServerRequest(image=image, mem_limit=mem, cpu_limit=cpu, gpus=gpus)


def permitted_images(
    limits: GroupLimits, allowed_images: AllowedImages, default_image: str
) -> list[str]:
    """Choices to offer in the spawn form for a group (the default image first)."""
    return list(image_choices(limits, allowed_images, default_image))


@dataclass(frozen=True)
class Holder:
    """A server that holds one of a group's slots (for messages and metrics)."""

    user: str
    server: str

    def __str__(self) -> str:
        return f"{self.user}/{self.server}" if self.server else f"{self.user}/"


def check_capacity(
    *,
    pool: str,
    user: str,
    limits: GroupLimits,
    holders: Sequence[Holder],
) -> None:
    """Refuse with 429 when the group or the user has no free slot.

    Args:
        pool: the charged group.
        user: the spawning user.
        limits: the group's effective limits.
        holders: servers currently holding the group's slots (pending or running).

    Raises:
        LimitError: 429 ``group_full`` or ``user_full`` naming the limit and the holders.
    """
    if limits.max_servers is not None and len(holders) >= limits.max_servers:
        names = ", ".join(str(h) for h in holders) or "none"
        raise LimitError(
            429,
            "group_full",
            f"Group {pool!r} has reached its limit of {limits.max_servers} server(s) "
            f"(max_servers); running: {names}. Try again when one stops, or ask a group "
            "manager.",
        )
    if limits.max_servers_per_user is not None:
        mine = [h for h in holders if h.user == user]
        if len(mine) >= limits.max_servers_per_user:
            names = ", ".join(str(h) for h in mine)
            raise LimitError(
                429,
                "user_full",
                f"You already run {len(mine)} server(s) charged to group {pool!r}, its limit "
                f"per user (max_servers_per_user={limits.max_servers_per_user}): {names}. "
                "Stop one first.",
            )
