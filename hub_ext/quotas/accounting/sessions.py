"""Server sessions and their sums per group, user and day or month (pure).

A *session* is one container (or Swarm service) of the Hub from its start to its stop, with
the resources the spawner gave it (its ``org.latticehub.*`` labels). Sums are in hours:

- ``container_hours``: wall time the server ran,
- ``gpu_hours``: wall time times the GPUs it held,
- ``cpu_hours`` / ``mem_gib_hours``: wall time times its CPU / memory limit (reserved, not
  used; a server with no limit counts 0).

A session that spans midnight (or a month's end) is split at the boundary, in UTC, so each
day's (month's) row holds only the hours inside it. A session still running counts up to
``now``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from latticehub import labels as L

from .entities import EXACT, OBSERVED, Session  # noqa: F401 - EXACT, OBSERVED lived here

#: How sums are bucketed in time.
PERIODS = ("day", "month")
#: How sums are keyed besides the period.
GROUPINGS = ("group", "user")
GIB = 1024**3


def session_from_labels(
    object_id: str, labels: Mapping[str, str], *, start: float, image: str = "", node: str = ""
) -> Session | None:
    """The session of an engine object, from the spawner's labels (``None``: not a server).

    >>> s = session_from_labels("c1", {L.GROUP: "lqcd", L.USER: "ann", L.GPUS: "0,1"}, start=5)
    >>> (s.group, s.user, s.gpus, s.start)
    ('lqcd', 'ann', 2, 5)
    """
    group, user = labels.get(L.GROUP, ""), labels.get(L.USER, "")
    if not object_id or not group or not user:
        return None
    try:
        mem = int(labels[L.MEM]) if labels.get(L.MEM) else None
    except ValueError:
        mem = None
    try:
        cpus = float(labels[L.CPU]) if labels.get(L.CPU) else None
    except ValueError:
        cpus = None
    return Session(
        id=object_id,
        group=group,
        user=user,
        server=labels.get(L.SERVER, ""),
        node=node or labels.get(L.NODE, ""),
        image=image,
        gpus=len([g for g in labels.get(L.GPUS, "").split(",") if g]),
        cpus=cpus,
        mem_bytes=mem,
        start=start,
    )


def period_start(t: float, period: str) -> datetime:
    """The UTC start of the day or month holding ``t``.

    >>> period_start(86400 * 31 + 5, "month").isoformat()
    '1970-02-01T00:00:00+00:00'
    """
    moment = datetime.fromtimestamp(t, UTC)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"period={period!r}: use one of {', '.join(PERIODS)}")


def next_period(start: datetime, period: str) -> datetime:
    """The start of the period after the one starting at ``start``."""
    if period == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def label_of(start: datetime, period: str) -> str:
    """``2026-11-28`` for a day, ``2026-11`` for a month."""
    return start.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


def split(start: float, end: float, period: str) -> list[tuple[str, float]]:
    """``(period label, seconds)`` pieces of ``[start, end)`` cut at period boundaries.

    >>> split(86400 - 60, 86400 + 30, "day")
    [('1970-01-01', 60.0), ('1970-01-02', 30.0)]
    """
    pieces: list[tuple[str, float]] = []
    t = start
    while t < end:
        begin = period_start(t, period)
        boundary = next_period(begin, period).timestamp()
        stop = min(end, boundary)
        pieces.append((label_of(begin, period), float(stop - t)))
        t = stop
    return pieces


@dataclass
class UsageRow:
    """Sums for one period and one group (or group and user)."""

    period: str
    group: str
    user: str = ""
    sessions: int = 0
    container_hours: float = 0.0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    mem_gib_hours: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, hours rounded to the second (1/3600)."""
        out: dict[str, object] = {"period": self.period, "group": self.group}
        if self.user:
            out["user"] = self.user
        out["sessions"] = self.sessions
        for key in ("container_hours", "gpu_hours", "cpu_hours", "mem_gib_hours"):
            out[key] = round(getattr(self, key), 6)
        return out


def aggregate(
    sessions: Iterable[Session],
    *,
    since: float,
    until: float,
    now: float,
    period: str = "day",
    by: str = "group",
) -> list[UsageRow]:
    """Sum sessions inside ``[since, until)`` per period and group (or group and user).

    Args:
        sessions: sessions that may overlap the window (others add nothing).
        since: window start, seconds since the epoch.
        until: window end.
        now: the current time: a running session counts up to here.
        period: ``day`` or ``month`` (UTC).
        by: ``group``, or ``user`` for one row per group and user.

    Returns:
        Rows sorted by period, group, user. A session is counted in ``sessions`` of every
        row whose period it overlaps.
    """
    if period not in PERIODS:
        raise ValueError(f"period={period!r}: use one of {', '.join(PERIODS)}")
    if by not in GROUPINGS:
        raise ValueError(f"by={by!r}: use one of {', '.join(GROUPINGS)}")
    rows: dict[tuple[str, str, str], UsageRow] = {}
    for s in sessions:
        end = s.end if s.end is not None else now
        begin, stop = max(s.start, since), min(end, until)
        if stop <= begin:
            continue
        user = s.user if by == "user" else ""
        for label, seconds in split(begin, stop, period):
            key = (label, s.group, user)
            row = rows.get(key)
            if row is None:
                row = rows[key] = UsageRow(period=label, group=s.group, user=user)
            hours = seconds / 3600.0
            row.sessions += 1
            row.container_hours += hours
            row.gpu_hours += hours * s.gpus
            row.cpu_hours += hours * (s.cpus or 0.0)
            row.mem_gib_hours += hours * (s.mem_bytes or 0) / GIB
    return [rows[k] for k in sorted(rows)]


def totals(rows: Sequence[UsageRow]) -> dict[str, dict[str, float]]:
    """Per group: the sums over every row (for the page's summary)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        t = out.setdefault(row.group, {"container_hours": 0.0, "gpu_hours": 0.0})
        t["container_hours"] += row.container_hours
        t["gpu_hours"] += row.gpu_hours
    return out


CSV_COLUMNS = (
    "period",
    "group",
    "user",
    "sessions",
    "container_hours",
    "gpu_hours",
    "cpu_hours",
    "mem_gib_hours",
)


def to_csv(rows: Sequence[UsageRow]) -> str:
    """Rows as CSV with a header line (hours to 6 decimals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        d = row.as_dict()
        writer.writerow(
            [_csv_safe(str(d.get(c, ""))) if c in ("group", "user") else d[c] for c in CSV_COLUMNS]
        )
    return buffer.getvalue()


def _csv_safe(text: str) -> str:
    # a cell starting with = + - @ runs as a formula in spreadsheets (CSV injection)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def parse_day(text: str, *, what: str) -> float:
    """``YYYY-MM-DD`` (or ``YYYY-MM``) as the UTC midnight starting it, in epoch seconds.

    Raises:
        ValueError: naming the parameter and the expected form.
    """
    for form in ("%Y-%m-%d", "%Y-%m"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"{what}={text!r}: use a UTC date YYYY-MM-DD or a month YYYY-MM")


def default_window(now: float, period: str) -> tuple[float, float]:
    """The last 30 days (``day``) or the last 12 months (``month``), up to the current one."""
    current = period_start(now, period)
    end = next_period(current, period)
    if period == "day":
        return (current - timedelta(days=29)).timestamp(), end.timestamp()
    start = current
    for _ in range(11):
        start = (start - timedelta(days=1)).replace(day=1)
    return start.timestamp(), end.timestamp()
