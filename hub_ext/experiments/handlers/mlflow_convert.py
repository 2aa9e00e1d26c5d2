"""MLflow REST API 2.0 <-> tracking entities (pure: no I/O, no access policy).

Requests arrive as MLflow's protobuf-JSON (POST bodies) or as query arguments (GET);
:class:`Fields` reads both with protobuf's lenient typing (int64 as number or string,
doubles as number or ``"NaN"``/``"Infinity"``). Responses are built the way
``MessageToDict`` writes them: snake_case names, int64 as numbers, empty lists left out.

Experiment searches are filtered and ordered here, in Python, over the projects a caller
may see (a short list); run searches go to the store through :mod:`..search`.
"""

from __future__ import annotations

import dataclasses
import re
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from latticehub.columnar import MetricColumns

from ..likematch import LikePatternError, check_like_pattern, like_match
from ..search import MAX_COMPARISONS, MAX_FILTER_LENGTH, Comparison
from ..serialize import number_json
from ..store.entities import DELETED, Metric, Project, Run, RunStatus
from ..store.errors import invalid

# -- status, view type ----------------------------------------------------------------
_TO_MLFLOW = {RunStatus.QUEUED: "SCHEDULED", RunStatus.LOST: "FAILED"}
_FROM_MLFLOW = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.QUEUED,
    "FINISHED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.KILLED,
}
_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_VIEW_TYPES = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}

# project tags shown to MLflow clients but derived from the project, never stored
OWNER_TAG = "latticehub.owner"
GROUP_TAG = "latticehub.group"
RESERVED_TAG_PREFIX = "latticehub."


def mlflow_status(status: RunStatus) -> str:
    """The MLflow name of a run status (QUEUED is SCHEDULED, LOST is FAILED)."""
    return _TO_MLFLOW.get(status, status.value)


def run_status(value: Any) -> RunStatus:
    """A :class:`RunStatus` from an MLflow status name (or its enum number).

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE for anything else.
    """
    name = _STATUS_NUMBERS.get(value, value) if isinstance(value, int) else value
    if isinstance(name, str) and name.isdigit():
        name = _STATUS_NUMBERS.get(int(name), name)
    if name not in _FROM_MLFLOW:
        raise invalid(
            f"Invalid value {value!r} for parameter 'status' supplied: use one of "
            f"{', '.join(_FROM_MLFLOW)}"
        )
    return _FROM_MLFLOW[name]


def view_type(value: Any, what: str = "view_type") -> str:
    """``ACTIVE_ONLY`` (the default), ``DELETED_ONLY`` or ``ALL`` (names or numbers 1-3)."""
    if value is None or value == "":
        return "ACTIVE_ONLY"
    name = _VIEW_TYPES.get(str(value), str(value).upper())
    if name not in _VIEW_TYPES.values():
        raise invalid(
            f"Invalid value {value!r} for parameter '{what}' supplied: use ACTIVE_ONLY, "
            "DELETED_ONLY or ALL"
        )
    return name


def status_comparison(comparison: Comparison) -> Comparison:
    """Translate MLflow status names in an ``attributes.status`` comparison to stored ones.

    ``SCHEDULED`` matches QUEUED runs and ``FAILED`` also matches LOST runs, as they are
    shown; other comparisons are returned unchanged.
    """
    if comparison.kind != "attribute" or comparison.key != "status":
        return comparison
    if comparison.op in ("LIKE", "ILIKE"):
        return comparison

    def stored(name: str) -> list[str]:
        if name == "SCHEDULED":
            return [RunStatus.QUEUED.value]
        if name == "FAILED":
            return [RunStatus.FAILED.value, RunStatus.LOST.value]
        return [name]

    values = comparison.value if isinstance(comparison.value, tuple) else (comparison.value,)
    names = tuple(v for name in values for v in stored(str(name)))
    op = {"=": "IN", "!=": "NOT IN"}.get(comparison.op, comparison.op)
    return dataclasses.replace(comparison, op=op, value=names)


# -- request fields ----------------------------------------------------------------------
class Fields:
    """Typed access to the fields of one MLflow request.

    Args:
        data: the JSON body, or the query arguments (lists for repeated fields).
    """

    def __init__(self, data: dict[str, Any], path: str = ""):
        self.data = data
        self.path = path

    def _missing(self, name: str) -> Exception:
        return invalid(
            f"Missing value for required parameter '{self.path}{name}'. See the API docs for "
            "more information about request parameters."
        )

    def _bad(self, name: str, value: Any, kind: str) -> Exception:
        return invalid(
            f"Invalid value {value!r} for parameter '{self.path}{name}' supplied: {kind}"
        )

    def string(self, name: str, *, required: bool = False, default: str = "") -> str:
        """A string field (numbers are refused, as MLflow's server does)."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise self._missing(name)
            return default
        if not isinstance(value, str):
            raise self._bad(name, value, "expected a string")
        return value

    def has(self, name: str) -> bool:
        """Whether the field was sent (and is not null)."""
        return self.data.get(name) is not None

    def integer(self, name: str, *, required: bool = False, default: int | None = None) -> Any:
        """An int64 field: a JSON integer or a string of digits."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise self._missing(name)
            return default
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, value, "expected an integer")
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        """A double field: a JSON number, ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
        value = self.data.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        return to_float(value, self.path + name)

    def items(self, name: str) -> list[Any]:
        """A repeated field: a list (a single value becomes a list of one)."""
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            return [value]
        return value

    def entries(self, name: str) -> list[Fields]:
        """A repeated message field, one :class:`Fields` per item."""
        out = []
        for i, item in enumerate(self.items(name)):
            if not isinstance(item, dict):
                raise self._bad(f"{name}[{i}]", item, "expected an object")
            out.append(Fields(item, f"{self.path}{name}[{i}]."))
        return out

    def key_values(self, name: str) -> list[tuple[str, str]]:
        """A repeated ``{key, value}`` field (tags, params) as pairs."""
        return [
            (entry.string("key", required=True), entry.string("value"))
            for entry in self.entries(name)
        ]


def to_float(value: Any, name: str) -> float:
    """A double from protobuf-JSON (numbers, and special values as strings)."""
    if isinstance(value, bool):
        raise invalid(f"Invalid value {value!r} for parameter '{name}' supplied: not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise invalid(f"Invalid value {value!r} for parameter '{name}' supplied: not a number")


# -- responses ------------------------------------------------------------------------
def pairs_json(mapping: dict[str, str]) -> list[dict[str, str]]:
    """A ``{key: value}`` map as MLflow's list of ``{key, value}``."""
    return [{"key": k, "value": v} for k, v in sorted(mapping.items())]


def experiment_tags(project: Project) -> dict[str, str]:
    """The project's tags plus the derived ``latticehub.owner``/``latticehub.group``."""
    tags = dict(project.tags)
    tags[OWNER_TAG] = project.owner
    if project.group:
        tags[GROUP_TAG] = project.group
    else:
        tags.pop(GROUP_TAG, None)
    return tags


def experiment_json(project: Project) -> dict[str, Any]:
    """An MLflow ``Experiment``."""
    return {
        "experiment_id": str(project.id),
        "name": project.name,
        "artifact_location": project.artifact_location,
        "lifecycle_stage": project.lifecycle_stage,
        "last_update_time": project.last_update_time,
        "creation_time": project.creation_time,
        "tags": pairs_json(experiment_tags(project)),
    }


def metric_json(metric: Metric) -> dict[str, Any]:
    """An MLflow ``Metric``."""
    return {
        "key": metric.key,
        "value": number_json(metric.value),
        "timestamp": metric.timestamp,
        "step": metric.step,
    }


def run_info_json(run: Run, *, experiment_deleted: bool = False) -> dict[str, Any]:
    """An MLflow ``RunInfo``; runs of a deleted experiment show as deleted, as in MLflow."""
    info: dict[str, Any] = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": str(run.project_id),
        "user_id": run.user,
        "status": mlflow_status(run.status),
        "start_time": run.start_time,
        "artifact_uri": run.artifact_uri,
        "lifecycle_stage": DELETED if experiment_deleted else run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    return info


def run_json(run: Run, *, experiment_deleted: bool = False) -> dict[str, Any]:
    """An MLflow ``Run``: info and data (latest metrics, params, tags)."""
    data: dict[str, Any] = {}
    if run.metrics:
        data["metrics"] = [metric_json(m) for _, m in sorted(run.metrics.items())]
    if run.params:
        data["params"] = pairs_json(run.params)
    if run.tags:
        data["tags"] = pairs_json(run.tags)
    return {
        "info": run_info_json(run, experiment_deleted=experiment_deleted),
        "data": data,
        "inputs": {},
    }


# -- experiment search ------------------------------------------------------------------
_EXPERIMENT_ATTRIBUTES = ("name", "experiment_id", "creation_time", "last_update_time")
_NUMERIC = ("creation_time", "last_update_time")
_ORDER_DEFAULT = ["creation_time DESC", "experiment_id ASC"]
_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<ident>[A-Za-z_]\w*\.(?:`[^`]*`|"[^"]*")|[A-Za-z_][\w.\-]*|`[^`]*`)
     |(?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
     |(?P<number>[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
     |(?P<op>!=|>=|<=|=|<|>)
     |(?P<punct>[(),])
    )""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class ExperimentCondition:
    """One comparison of an experiment filter (``kind`` is ``attribute`` or ``tag``)."""

    kind: str
    key: str
    op: str
    value: Any = None


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, end = [], 0, len(text.rstrip())
    while pos < end:
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise invalid(f"Invalid clause(s) in filter string: {text[pos:].strip()[:40]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"'":
        quote = text[0]
        return text[1:-1].replace("\\" + quote, quote).replace(quote * 2, quote)
    return text


def _identifier(text: str) -> tuple[str, str]:
    prefix, dot, rest = text.partition(".")
    if not dot or prefix.startswith("`"):
        kind, key = "attribute", _unquote(text)
    elif prefix.lower() in ("attribute", "attributes"):
        kind, key = "attribute", _unquote(rest)
    elif prefix.lower() in ("tag", "tags"):
        kind, key = "tag", _unquote(rest)
    else:
        raise invalid(
            f"Invalid entity type '{prefix}'. Valid entity types are ('attribute', 'tag', 'tags')"
        )
    if kind == "attribute" and key not in _EXPERIMENT_ATTRIBUTES:
        raise invalid(
            f"Invalid attribute key '{key}' specified. Valid keys are "
            f"'{set(_EXPERIMENT_ATTRIBUTES)}'"
        )
    return kind, key


def parse_experiment_filter(text: str) -> list[ExperimentCondition]:
    """Parse MLflow's ``search_experiments`` filter (comparisons joined by AND).

    Supported: ``name``, ``experiment_id`` (``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IN``),
    ``creation_time``/``last_update_time`` (numeric comparisons) and ``tags.<key>``
    (``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IS [NOT] NULL``).

    The filter is at most ``MAX_FILTER_LENGTH`` characters with at most ``MAX_COMPARISONS``
    comparisons, and each ``LIKE``/``ILIKE`` pattern at most ``MAX_LIKE_PATTERN``
    characters (:mod:`..likematch`), as for run searches.

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE naming what is wrong.
    """
    if text and len(text) > MAX_FILTER_LENGTH:
        raise invalid(
            f"Invalid filter string: it is {len(text)} characters long; the limit is "
            f"{MAX_FILTER_LENGTH}. Example: name LIKE 'phi4-%' AND tags.model = 'realnvp'"
        )
    tokens = _tokens(text or "")
    conditions: list[ExperimentCondition] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise invalid(f"Invalid filter string {text!r}: it ends in the middle of a clause")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        kind, raw = take()
        if kind != "ident":
            raise invalid(f"Invalid clause(s) in filter string: {raw!r}: expected a name")
        entity, key = _identifier(raw)
        op_kind, op = take()
        op = op.upper()
        if op_kind == "ident" and op == "IS":
            negate = tokens[i][1].upper() == "NOT" if i < len(tokens) else False
            i += negate
            if take()[1].upper() != "NULL" or entity != "tag":
                raise invalid(f"Invalid comparison in filter string {text!r}: IS NULL for tags")
            conditions.append(
                ExperimentCondition(entity, key, "IS NOT NULL" if negate else "IS NULL")
            )
        else:
            if op_kind != "op" and op not in ("LIKE", "ILIKE", "IN"):
                raise invalid(f"Invalid comparator {op!r} in filter string {text!r}")
            numeric = entity == "attribute" and key in _NUMERIC
            allowed: tuple[str, ...] = (
                ("=", "!=", "<", "<=", ">", ">=") if numeric else ("=", "!=", "LIKE", "ILIKE")
            )
            if key == "experiment_id" and entity == "attribute":
                allowed = ("=", "!=", "IN")
            if op not in allowed:
                raise invalid(f"Invalid comparator '{op}' for '{key}': use one of {allowed}")
            if op == "IN":
                conditions.append(ExperimentCondition(entity, key, op, _in_list(take, text)))
            else:
                value_kind, value = take()
                if numeric and value_kind == "number":
                    conditions.append(ExperimentCondition(entity, key, op, float(value)))
                elif not numeric and value_kind == "string":
                    value = _unquote(value)
                    if op in ("LIKE", "ILIKE"):
                        _check_pattern(value, f"{op} pattern for '{key}'")
                    conditions.append(ExperimentCondition(entity, key, op, value))
                else:
                    expected = "a number" if numeric else "a quoted string"
                    raise invalid(
                        f"Invalid value {value} for '{key}' in filter: expected {expected}"
                    )
        if len(conditions) > MAX_COMPARISONS:
            raise invalid(
                f"Invalid filter string: more than {MAX_COMPARISONS} comparisons; narrow the "
                "search with fewer, more selective ones"
            )
        if i < len(tokens):
            kind, raw = take()
            if raw.upper() != "AND" or i >= len(tokens):
                raise invalid(f"Invalid clause(s) in filter string: {raw!r}: join with AND")
    return conditions


def _in_list(take: Callable[[], tuple[str, str]], text: str) -> tuple[str, ...]:
    if take()[1] != "(":
        raise invalid(f"Invalid filter string {text!r}: IN needs a list like ('1', '2')")
    values = []
    while True:
        kind, raw = take()
        if kind not in ("string", "number"):
            raise invalid(f"Invalid filter string {text!r}: bad IN list item {raw!r}")
        values.append(_unquote(raw))
        kind, raw = take()
        if raw == ")":
            return tuple(values)
        if raw != ",":
            raise invalid(f"Invalid filter string {text!r}: expected ',' or ')' in IN list")


def _check_pattern(pattern: str, what: str) -> None:
    try:
        check_like_pattern(pattern, what)
    except LikePatternError as e:
        raise invalid(f"Invalid filter string: {e}") from None


def _holds(condition: ExperimentCondition, project: Project, tags: dict[str, str]) -> bool:
    op, want = condition.op, condition.value
    if condition.kind == "tag":
        have: Any = tags.get(condition.key)
        if op in ("IS NULL", "IS NOT NULL"):
            return (have is None) == (op == "IS NULL")
        if have is None:
            return False
    elif condition.key == "experiment_id":
        have = str(project.id)
    else:
        have = getattr(project, condition.key)
    if op == "=":
        return have == want
    if op == "!=":
        return have != want
    if op in ("LIKE", "ILIKE"):
        return like_match(want, have, ignore_case=op == "ILIKE")
    if op == "IN":
        return have in want
    return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]


def parse_experiment_order(items: Iterable[str]) -> list[tuple[str, bool]]:
    """``(attribute, ascending)`` pairs from MLflow's experiment ``order_by`` items."""
    result = []
    for item in list(items) or _ORDER_DEFAULT:
        if not isinstance(item, str) or not item.strip():
            raise invalid(f"Invalid order_by clause {item!r}")
        words = item.strip().split()
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise invalid(f"Invalid order_by clause '{item}': use '<attribute> [ASC|DESC]'")
        kind, key = _identifier(words[0])
        if kind != "attribute":
            raise invalid(f"Invalid order_by entity: {kind}")
        result.append((key, len(words) == 1 or words[1].upper() == "ASC"))
    if not any(key == "experiment_id" for key, _ in result):
        result.append(("experiment_id", False))
    return result


def select_experiments(
    projects: Iterable[Project], *, view: str, filter_text: str, order_by: Iterable[str]
) -> list[Project]:
    """The projects an experiment search returns, filtered and ordered as MLflow does."""
    conditions = parse_experiment_filter(filter_text)
    order = parse_experiment_order(order_by)
    chosen = []
    for project in projects:
        deleted = project.lifecycle_stage == DELETED
        if (view == "ACTIVE_ONLY" and deleted) or (view == "DELETED_ONLY" and not deleted):
            continue
        tags = experiment_tags(project)
        if all(_holds(c, project, tags) for c in conditions):
            chosen.append(project)
    for key, ascending in reversed(order):

        def sort_key(p: Any, k: str = key) -> Any:
            return p.id if k == "experiment_id" else getattr(p, k)

        chosen.sort(key=sort_key, reverse=not ascending)
    return chosen


_NUMBER_TYPES = frozenset({float, int})


def plain_metrics(items: list[Any]) -> list[MetricColumns] | None:
    """Metrics of a batch as columns per key when every entry is the common plain form.

    The common form (what the mlflow client sends: a non-empty string key, a JSON number
    value, integer timestamp and step) goes straight into the columns, with no object per
    point; anything else returns ``None`` and goes through :class:`Fields`, which accepts
    the same values and words the errors. Keys are checked by the store, once each.
    """
    if not items or set(map(type, items)) != {dict}:
        return None
    try:  # one pass per field, in C: a missing field or a wrong type fails the form
        keys = [item["key"] for item in items]
        values = [item["value"] for item in items]
        stamps = [item["timestamp"] for item in items]
        steps = [item.get("step", 0) for item in items]
    except KeyError:
        return None
    if (
        set(map(type, keys)) != {str}
        or not set(map(type, values)) <= _NUMBER_TYPES
        or set(map(type, stamps)) != {int}
        or set(map(type, steps)) != {int}
    ):
        return None
    names = dict.fromkeys(keys)  # in first-seen order
    if "" in names:
        return None
    if len(names) == 1:
        grouped = {keys[0]: (steps, stamps, values)}
    else:
        grouped = {name: ([], [], []) for name in names}
        for key, step, stamp, value in zip(keys, steps, stamps, values, strict=True):
            column = grouped[key]
            column[0].append(step)
            column[1].append(stamp)
            column[2].append(value)
    try:
        return [
            MetricColumns(key, array("q", k_steps), array("q", k_stamps), array("d", k_values))
            for key, (k_steps, k_stamps, k_values) in grouped.items()
        ]
    except OverflowError:  # a step or time past 64 bits: Fields words the error
        return None
