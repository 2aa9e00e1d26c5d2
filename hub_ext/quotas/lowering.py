"""A manager's request to lower a group's values, checked against the ceiling (pure).

The spawner already ignores anything above the ceiling when it reads the group's
properties (:func:`latticehub.limits.apply_properties`); this module refuses such a request up
front, with a message that names the ceiling, so that what a manager sets is what the next
spawn gets. Values are parsed by the spawner's own parser (:func:`parse_group_limits`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from latticehub.limits import (
    LIMIT_KEYS,
    LOWERABLE_KEYS,
    PROPERTIES_KEY,
    GroupLimits,
    parse_group_limits,
)
from latticehub.units import format_bytes, format_cpu

#: Keys in the order the form and messages list them.
ORDER = (
    "max_servers",
    "max_servers_per_user",
    "mem_limit",
    "cpu_limit",
    "gpus",
    "images",
    "nodes",
    "gpu_sharing",
    "shared_readonly",
)
COUNT_KEYS = ("max_servers", "max_servers_per_user", "gpus")


class LoweringError(Exception):
    """A refused request: ``status_code`` 400 (bad value, above the ceiling) or 404."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _show(key: str, value: Any) -> str:
    if key == "mem_limit":
        return format_bytes(value)
    if key == "cpu_limit":
        return format_cpu(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def _above(group: str, key: str, value: Any, ceiling: Any, hint: str) -> LoweringError:
    return LoweringError(
        400,
        f"{key}={_show(key, value)} is above group {group!r}'s ceiling of "
        f"{_show(key, ceiling)} (set by an admin in group_limits); managers may only lower "
        f"it: {hint}.",
    )


def check_value(group: str, ceiling: GroupLimits, key: str, raw: Any) -> None:
    """Refuse a value that is malformed or above the ceiling (``None`` is always fine).

    Raises:
        LoweringError: 400 naming the key, the value, the ceiling and what to send.
    """
    if raw is None:
        return
    try:
        parsed = getattr(parse_group_limits({key: raw}, where=key), key)
    except ValueError as e:
        raise LoweringError(400, str(e)) from None
    cap = getattr(ceiling, key)
    if key in ("max_servers", "max_servers_per_user", "mem_limit", "cpu_limit"):
        if cap is not None and parsed > cap:
            raise _above(group, key, parsed, cap, f"send at most {_show(key, cap)}")
    elif key == "gpus":
        if parsed > (cap or 0):
            raise _above(group, key, parsed, cap or 0, f"send at most {cap or 0}")
    elif key in ("images", "nodes"):
        if cap is not None:
            extra = [n for n in parsed if n not in cap]
            if extra:
                raise LoweringError(
                    400,
                    f"{key}: {', '.join(extra)} not in group {group!r}'s ceiling "
                    f"{_show(key, cap)} (set by an admin in group_limits); managers may only "
                    "choose among those.",
                )
    elif key == "gpu_sharing":
        if parsed and not cap:
            raise _above(group, key, parsed, cap, "GPU sharing can only be switched off")
    elif key == "shared_readonly":
        if not parsed and cap:
            raise LoweringError(
                400,
                f"shared_readonly=False is above group {group!r}'s ceiling (read-only, set by "
                "an admin in group_limits); managers may only switch it on.",
            )


def plan_lowering(
    *,
    group: str,
    ceiling: GroupLimits,
    properties: Mapping[str, Any] | None,
    changes: Any,
) -> dict[str, Any]:
    """The group's new ``properties`` after a manager's changes.

    Args:
        group: the group (for messages).
        ceiling: the admin's limits of the group.
        properties: the group's current properties (every key is kept).
        changes: ``{key: value}`` to set under ``properties["latticehub"]``; ``None``
            removes a key (the ceiling applies again).

    Returns:
        The whole new properties dict (other keys untouched).

    Raises:
        LoweringError: 400 for an unknown, admin-only, malformed or too large value.
    """
    if not isinstance(changes, Mapping) or not changes:
        raise LoweringError(
            400, 'send a JSON object of the values to lower, e.g. {"max_servers": 2}'
        )
    for key in changes:
        if key not in LOWERABLE_KEYS:
            what = "admin-only (group_limits)" if key in LIMIT_KEYS else "not a limit"
            raise LoweringError(
                400,
                f"{key!r} is {what}; managers may lower: {', '.join(ORDER)}",
            )
    for key in ORDER:
        if key in changes:
            check_value(group, ceiling, key, changes[key])
    properties = dict(properties or {})
    current = properties.get(PROPERTIES_KEY)
    lowered = dict(current) if isinstance(current, Mapping) else {}
    for key, value in changes.items():
        if value is None:
            lowered.pop(key, None)
        else:
            lowered[key] = list(value) if isinstance(value, tuple) else value
    properties[PROPERTIES_KEY] = lowered
    return properties


def form_fields(ceiling: GroupLimits) -> list[str]:
    """The keys the form offers for a ceiling (lists and flags only where they can move)."""
    fields = ["max_servers", "max_servers_per_user", "mem_limit", "cpu_limit"]
    if ceiling.gpus:
        fields.append("gpus")
    if ceiling.images is not None:
        fields.append("images")
    if ceiling.nodes is not None:
        fields.append("nodes")
    if ceiling.gpu_sharing:
        fields.append("gpu_sharing")
    if not ceiling.shared_readonly:
        fields.append("shared_readonly")
    return fields


def changes_from_form(ceiling: GroupLimits, form: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A form's fields as changes: an empty field means "no lowering" (``None``).

    Counts must be whole numbers; memory and CPUs are passed as typed (``"2G"``,
    ``"0.5"``); list fields are checkboxes over the ceiling's list (all ticked means no
    lowering); ``gpu_sharing`` unticked switches sharing off, ``shared_readonly`` ticked
    switches read-only on.

    Raises:
        LoweringError: 400 for a count that is not a whole number.
    """

    def text(key: str) -> str:
        values = form.get(key) or [""]
        return values[-1].strip()

    changes: dict[str, Any] = {}
    for key in form_fields(ceiling):
        if key in COUNT_KEYS:
            raw = text(key)
            if not raw:
                changes[key] = None
                continue
            try:
                changes[key] = int(raw)
            except ValueError:
                raise LoweringError(
                    400, f"{key}={raw!r} must be a whole number, e.g. 2 (empty: the ceiling)"
                ) from None
        elif key in ("mem_limit", "cpu_limit"):
            changes[key] = text(key) or None
        elif key in ("images", "nodes"):
            cap = getattr(ceiling, key) or ()
            ticked = {v for v in form.get(key) or [] if v}
            changes[key] = None if ticked >= set(cap) else [n for n in cap if n in ticked]
        elif key == "gpu_sharing":
            changes[key] = None if text(key) else False
        elif key == "shared_readonly":
            changes[key] = True if text(key) else None
    return changes
