"""Pure helpers of the dashboard pages: columns, sorting, paging links, safe JSON.

Nothing here touches tornado or the store, so that the query-string logic of the runs
table is tested with plain tables (tests/unit/test_dashboard_query.py).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from ..search import SearchError, parse_order_by
from ..store.abstract import decode_token, encode_token

#: Page sizes offered by the runs table, and the default.
PAGE_SIZES = (25, 50, 100, 200, 500)
DEFAULT_PAGE_SIZE = 50
#: Columns shown per kind when the user has not chosen any.
DEFAULT_COLUMNS_PER_KIND = 6
_PLAIN_KEY = re.compile(r"^[A-Za-z_][\w\-./]*$")
_KIND_PREFIX = {"param": "params", "metric": "metrics", "tag": "tags", "attribute": "attributes"}

#: Fixed columns of the runs table: (label, order_by expression).
ATTRIBUTE_COLUMNS = (
    ("Run", "attributes.run_name"),
    ("Status", "attributes.status"),
    ("User", "attributes.user_id"),
    ("Started", "attributes.start_time"),
)


@dataclass(frozen=True)
class Column:
    """A param, metric or tag column of the runs table.

    Attributes:
        kind: ``"param"``, ``"metric"`` or ``"tag"``.
        key: the param/metric/tag key.
    """

    kind: str
    key: str

    @property
    def expr(self) -> str:
        """The filter / order-by identifier, e.g. ``metrics.loss`` or ``params.`my key```."""
        return column_expr(self.kind, self.key)


def column_expr(kind: str, key: str) -> str:
    """``metrics.loss``; keys the search grammar would misread are quoted with backticks."""
    prefix = _KIND_PREFIX[kind]
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}"
    return f"{prefix}.`{key.replace('`', '``')}`"


def parse_column(text: str) -> Column | None:
    """A column from its identifier (``params.L``); None for attributes or bad text."""
    try:
        (order,) = parse_order_by([text])
    except (SearchError, ValueError):
        return None
    if order.kind == "attribute" or not order.ascending:
        return None
    return Column(order.kind, order.key)


def choose_columns(
    chosen: Sequence[str] | None, runs: Iterable[Any]
) -> tuple[list[Column], list[Column]]:
    """``(shown, available)`` columns of the runs table.

    Args:
        chosen: column identifiers from the query string (``col=params.L``), or None when
            the user has not chosen (then up to :data:`DEFAULT_COLUMNS_PER_KIND` params and
            metrics seen on the page are shown).
        runs: the runs of the page (anything with ``params`` and ``metrics`` mappings).

    Returns:
        The columns to show, in order, and every column offered by the chooser (keys seen
        on this page plus the chosen ones), params first, each kind sorted by key.
    """
    params: set[str] = set()
    metrics: set[str] = set()
    for run in runs:
        params.update(run.params)
        metrics.update(run.metrics)
    seen = [Column("param", k) for k in sorted(params)] + [
        Column("metric", k) for k in sorted(metrics)
    ]
    if chosen is None:
        shown = [c for c in seen if c.kind == "param"][:DEFAULT_COLUMNS_PER_KIND] + [
            c for c in seen if c.kind == "metric"
        ][:DEFAULT_COLUMNS_PER_KIND]
    else:
        shown = []
        for text in chosen:
            column = parse_column(text) if text else None
            if column is not None and column not in shown:
                shown.append(column)
    available = list(seen)
    for column in shown:
        if column not in available:
            available.append(column)
    order = {"param": 0, "metric": 1, "tag": 2}
    available.sort(key=lambda c: (order[c.kind], c.key))
    return shown, available


def sort_state(order_by: str | None, expr: str) -> str | None:
    """``"asc"``/``"desc"`` when the table is sorted by ``expr``, else None."""
    if not order_by:
        return None
    try:
        (current,) = parse_order_by([order_by])
        (wanted,) = parse_order_by([expr])
    except (SearchError, ValueError):
        return None
    if (current.kind, current.key) != (wanted.kind, wanted.key):
        return None
    return "asc" if current.ascending else "desc"


def toggle_order(order_by: str | None, expr: str) -> str:
    """The order-by after a click on the header of ``expr``: ASC first, then DESC, then ASC."""
    return f"{expr} DESC" if sort_state(order_by, expr) == "asc" else f"{expr} ASC"


def url_with(path: str, args: Mapping[str, Sequence[str]], **changes: Any) -> str:
    """``path`` with the query ``args`` (multi-valued) after ``changes``.

    A change to None removes the argument, a list replaces every value, a string sets one.
    Empty values are dropped, except for ``col`` (an empty ``col`` marks an explicit choice
    of no columns).
    """
    merged: dict[str, list[str]] = {k: list(v) for k, v in args.items()}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, str | int):
            merged[key] = [str(value)]
        else:
            merged[key] = [str(v) for v in value]
    pairs = [(k, v) for k, values in merged.items() for v in values if v != "" or k == "col"]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def page_size(raw: str | None) -> int:
    """The runs table's page size from ``size=`` (one of :data:`PAGE_SIZES`)."""
    try:
        size = int(raw or DEFAULT_PAGE_SIZE)
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def page_window(token: str | None, size: int, count: int) -> tuple[int, int, str | None]:
    """Where a page is: ``(first, last, previous token)``.

    ``first`` and ``last`` number the runs shown from 1; the previous token is None on the
    first page and '' when the page before is the first one (no token).

    Raises:
        TrackingError: for a token the store did not make.
    """
    offset = decode_token(token)
    previous = None
    if offset > 0:
        back = max(0, offset - size)
        previous = encode_token(back) if back else ""
    return (offset + 1 if count else offset), offset + count, previous


def script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, allow_nan=False, default=str)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def format_time(ms: int | None) -> str:
    """``2024-05-01 12:00:03 UTC`` ('' for None); pages turn it into local time in JS."""
    if ms is None:
        return ""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(start: int | None, end: int | None) -> str:
    """``1h 02m``, ``3m 05s``, ``12.3s`` ('' when a bound is missing)."""
    if start is None or end is None:
        return ""
    seconds = max(0, end - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_value(value: Any) -> str:
    """A metric value for a table cell: 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def param_rows(runs: Sequence[Any]) -> list[tuple[str, list[str | None], bool]]:
    """Rows of the compare page's params table: ``(key, values per run, differ)``.

    A missing param is None, which differs from any value.
    """
    keys = sorted({key for run in runs for key in run.params})
    rows = []
    for key in keys:
        values = [run.params.get(key) for run in runs]
        rows.append((key, values, len(set(values)) > 1))
    return rows


def record_rows(record: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Rows of a JSON record (environment, failure): ``(key, text, long)``.

    Lists become one item per line, objects ``key=value`` lines; ``long`` marks text of
    several lines (shown folded).
    """
    rows = []
    for key in sorted(record):
        value = record[key]
        if isinstance(value, list | tuple):
            text = "\n".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = "\n".join(f"{k}={v}" for k, v in sorted(value.items()))
        elif value is None:
            text = ""
        else:
            text = str(value)
        rows.append((str(key), text, "\n" in text))
    return rows


def quote_path(path: str) -> str:
    """A relative path for a URL (``/`` kept, everything else that needs it escaped)."""
    return quote(path, safe="/")
