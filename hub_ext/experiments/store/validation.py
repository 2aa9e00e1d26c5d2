"""Checks of names, values and batch sizes (pure; MLflow's limits where it has them)."""

from __future__ import annotations

import math
import re

from .entities import Metric, Param, Tag
from .errors import RESOURCE_LIMIT_EXCEEDED, TrackingError, invalid

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ENTITIES = 1000
MAX_LOG_LINE = 64 * 1024
MAX_LOG_LINES = 10_000
MAX_NAME_LENGTH = 500

_KEY_RE = re.compile(r"^[\w\-. /]+$")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def check_key(key: object, what: str) -> str:
    """A metric/param/tag key: letters, digits, ``_ - . / space``; no ``..``, no leading /.

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE naming the key and the rule.
    """
    if not isinstance(key, str) or not key:
        raise invalid(f"Invalid {what} name: {key!r}. Names must be non-empty strings.")
    if len(key) > MAX_KEY_LENGTH:
        raise invalid(
            f"{what.capitalize()} name '{key[:40]}...' had length {len(key)}, which exceeded "
            f"length limit of {MAX_KEY_LENGTH}"
        )
    if not _KEY_RE.match(key) or ".." in key or key.startswith("/"):
        raise invalid(
            f"Invalid {what} name: '{key}'. Names may only contain alphanumerics, underscores "
            "(_), dashes (-), periods (.), spaces ( ), and slashes (/), and may not contain "
            "'..' or start with '/'."
        )
    return key


def check_run_id(run_id: object) -> str:
    """A run id: 32 lower-case hex digits."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise invalid(f"Invalid run ID: {run_id!r}. Run IDs are 32 hexadecimal characters.")
    return run_id


def check_metric(metric: Metric) -> Metric:
    """Key, numeric value (NaN and infinities allowed, as in MLflow), int step/timestamp."""
    check_key(metric.key, "metric")
    value = metric.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(
            f"Got invalid value {value!r} for metric '{metric.key}' (timestamp="
            f"{metric.timestamp}). Please specify value as a valid double (64-bit floating "
            "point)"
        )
    for name in ("timestamp", "step"):
        number = getattr(metric, name)
        if isinstance(number, bool) or not isinstance(number, int):
            raise invalid(
                f"Got invalid {name} {number!r} for metric '{metric.key}' "
                f"(value={value}). {name.capitalize()} must be an integer"
            )
    return metric


def _plain_numbers(metric: Metric) -> bool:
    # exact types: bool is an int subclass and must go through check_metric's refusal
    return (
        type(metric.value) in (float, int)
        and type(metric.step) is int
        and type(metric.timestamp) is int
    )


def check_param(param: Param) -> Param:
    """Key and a string value of at most 6000 characters."""
    check_key(param.key, "param")
    if not isinstance(param.value, str):
        raise invalid(f"Param '{param.key}' value must be a string, got {param.value!r}")
    if len(param.value) > MAX_PARAM_VALUE_LENGTH:
        raise invalid(
            f"Param value '{param.value[:40]}...' had length {len(param.value)}, which exceeded "
            f"length limit of {MAX_PARAM_VALUE_LENGTH}"
        )
    return param


def check_tag(tag: Tag) -> Tag:
    """Key and a string value of at most 8000 characters."""
    check_key(tag.key, "tag")
    if not isinstance(tag.value, str):
        raise invalid(f"Tag '{tag.key}' value must be a string, got {tag.value!r}")
    if len(tag.value) > MAX_TAG_VALUE_LENGTH:
        raise invalid(
            f"Tag value '{tag.value[:40]}...' had length {len(tag.value)}, which exceeded "
            f"length limit of {MAX_TAG_VALUE_LENGTH}"
        )
    return tag


def check_batch(
    metrics: list[Metric], params: list[Param], tags: list[Tag], points: int = 0
) -> None:
    """MLflow's batch limits and per-entity checks; duplicate params with two values fail.

    ``points``: metric points sent as columns besides ``metrics`` (their keys and numbers
    are checked where the columns are made).
    """
    count = len(metrics) + points
    if count > MAX_BATCH_METRICS:
        raise TrackingError(
            f"A batch logging request can contain at most {MAX_BATCH_METRICS} metrics. "
            f"Got {count} metrics. Please split up metrics across multiple requests "
            "and try again.",
            RESOURCE_LIMIT_EXCEEDED,
        )
    if len(params) > MAX_BATCH_PARAMS:
        raise TrackingError(
            f"A batch logging request can contain at most {MAX_BATCH_PARAMS} params. Got "
            f"{len(params)} params. Please split up params across multiple requests and try "
            "again.",
            RESOURCE_LIMIT_EXCEEDED,
        )
    if len(tags) > MAX_BATCH_TAGS:
        raise TrackingError(
            f"A batch logging request can contain at most {MAX_BATCH_TAGS} tags. Got "
            f"{len(tags)} tags. Please split up tags across multiple requests and try again.",
            RESOURCE_LIMIT_EXCEEDED,
        )
    total = count + len(params) + len(tags)
    if total > MAX_BATCH_ENTITIES:
        raise TrackingError(
            f"A batch logging request can contain at most {MAX_BATCH_ENTITIES} total "
            f"metrics, params, and tags. Got {total} entities.",
            RESOURCE_LIMIT_EXCEEDED,
        )
    checked: set[str] = set()  # a batch repeats few keys: check each once
    for metric in metrics:
        if type(metric.key) is str and metric.key in checked and _plain_numbers(metric):
            continue
        check_metric(metric)
        checked.add(metric.key)
    seen: dict[str, str] = {}
    for param in params:
        check_param(param)
        if seen.setdefault(param.key, param.value) != param.value:
            raise invalid(
                f"Duplicate parameter keys have been submitted: ['{param.key}']. Please ensure "
                "the request contains only one param value per param key."
            )
    for tag in tags:
        check_tag(tag)


def check_log_lines(stream: object, offset: object, lines: object) -> list[str]:
    """A log append: stream ``stdout``/``stderr``, offset >= 0, bounded lines."""
    if stream not in ("stdout", "stderr"):
        raise invalid(f"stream={stream!r}: use 'stdout' or 'stderr'")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise invalid(f"offset={offset!r} must be the index (>= 0) of the first line sent")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise invalid("lines must be a list of strings")
    if len(lines) > MAX_LOG_LINES:
        raise TrackingError(
            f"at most {MAX_LOG_LINES} log lines per request, got {len(lines)}: send in parts",
            RESOURCE_LIMIT_EXCEEDED,
        )
    for line in lines:
        if len(line) > MAX_LOG_LINE:
            raise TrackingError(
                f"a log line of {len(line)} characters exceeds the limit of {MAX_LOG_LINE}; "
                "split long output into lines",
                RESOURCE_LIMIT_EXCEEDED,
            )
    return lines


def check_name(name: object, what: str) -> str:
    """A project or run name: non-empty string of bounded length."""
    if not isinstance(name, str) or not name.strip():
        raise invalid(f"{what} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"{what} name exceeds {MAX_NAME_LENGTH} characters")
    return name


def finite_or_none(value: float) -> float | None:
    """``value`` if finite, else ``None`` (NaN/inf are stored with a flag)."""
    return value if math.isfinite(value) else None
