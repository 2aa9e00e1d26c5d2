"""``api/usage`` (JSON or CSV) and the ``usage`` page: recorded hours per group and user.

Admins see every group, managers their own groups. Each request first brings the record up
to date with the engine (one short round), so a server that just stopped is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from ..accounting import plot
from ..accounting.recorder import UsageRecorder
from ..accounting.sessions import (
    GROUPINGS,
    PERIODS,
    UsageRow,
    aggregate,
    default_window,
    parse_day,
    to_csv,
    totals,
)
from ..accounting.store import UsageStore
from ..docker_source import EngineUnavailable
from .api import APIHandler
from .base import QuotaError, QuotasHandler
from .pages import PageHandler

#: The widest window one request may sum (days), so one request stays cheap.
MAX_WINDOW_DAYS = 3 * 366


@dataclass(frozen=True)
class UsageQuery:
    """A validated usage request."""

    period: str
    by: str
    since: float
    until: float
    groups: frozenset[str] | None


def parse_usage_query(args: Mapping[str, list[str]], now: float) -> UsageQuery:
    """``period``, ``by``, ``since``, ``until``, ``group`` (repeatable) from query arguments.

    Raises:
        ValueError: a bad value, named with what would be accepted.
    """

    def one(name: str, default: str) -> str:
        values = args.get(name) or []
        return values[-1] if values else default

    period = one("period", "day")
    if period not in PERIODS:
        raise ValueError(f"period={period!r}: use one of {', '.join(PERIODS)}")
    by = one("by", "group")
    if by not in GROUPINGS:
        raise ValueError(f"by={by!r}: use one of {', '.join(GROUPINGS)}")
    since, until = default_window(now, period)
    if one("since", ""):
        since = parse_day(one("since", ""), what="since")
    if one("until", ""):
        until = parse_day(one("until", ""), what="until")
    if until <= since:
        raise ValueError("until must be after since (both UTC dates, until is exclusive)")
    if until - since > MAX_WINDOW_DAYS * 86400:
        raise ValueError(f"the window is over {MAX_WINDOW_DAYS} days: narrow since/until")
    groups = [g for value in args.get("group") or [] for g in value.split(",") if g]
    return UsageQuery(period, by, since, until, frozenset(groups) if groups else None)


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


class UsageMixin(QuotasHandler):
    """Reads the recorded usage that the caller may see."""

    @property
    def usage_store(self) -> UsageStore:
        """The usage store."""
        return self.settings["usage_store"]

    @property
    def recorder(self) -> UsageRecorder | None:
        """The recorder (``None`` when the app records nothing)."""
        return self.settings.get("recorder")

    def _args(self) -> dict[str, list[str]]:
        return {
            k: [v.decode("utf-8", "replace") for v in vs]
            for k, vs in self.request.query_arguments.items()
        }

    async def usage_rows(self) -> tuple[UsageQuery, list[UsageRow], str | None]:
        """The query, its rows, and a warning when the engine could not be read now."""
        viewer = self.manager()
        now = self.usage_clock()
        try:
            query = parse_usage_query(self._args(), now)
        except ValueError as e:
            raise QuotaError(400, str(e)) from None
        if query.groups is not None:
            for group in sorted(query.groups):
                if not viewer.can_manage(group):
                    raise QuotaError(403, f"{viewer.name} is not a manager of group {group!r}")
        groups = query.groups
        if groups is None and not viewer.all_groups:
            groups = viewer.manages
        warning = None
        if self.recorder is not None:
            try:
                await self.recorder.record()
            except EngineUnavailable as e:
                warning = f"Hours up to the last successful reading; {e}"
        sessions = self.usage_store.sessions(since=query.since, until=query.until, groups=groups)
        rows = aggregate(
            sessions,
            since=query.since,
            until=query.until,
            now=now,
            period=query.period,
            by=query.by,
        )
        return query, rows, warning

    def usage_clock(self) -> float:
        """The current time (the recorder's clock, so tests can drive both)."""
        recorder = self.recorder
        return recorder.clock() if recorder is not None else datetime.now(UTC).timestamp()


class UsageAPIHandler(UsageMixin, APIHandler):
    """``GET api/usage``: rows as JSON, or CSV with ``format=csv``."""

    async def get(self) -> None:
        """Hours per period and group (``by=user``: per group and user)."""
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise QuotaError(400, f"format={fmt!r}: use json or csv")
        query, rows, warning = await self.usage_rows()
        if fmt == "csv":
            name = f"latticehub-usage-{query.period}-{_day(query.since)}-{_day(query.until)}.csv"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            self.finish(to_csv(rows))
            return
        self.write_json(
            {
                "period": query.period,
                "by": query.by,
                "since": _day(query.since),
                "until": _day(query.until),
                "items": [r.as_dict() for r in rows],
                "totals": totals(rows),
                "warning": warning,
            }
        )


class UsagePage(UsageMixin, PageHandler):
    """``/usage``: a chart of container- and GPU-hours, the table, a CSV link."""

    async def get(self) -> None:
        """The usage page (403 for callers who manage no group)."""
        query, rows, warning = await self.usage_rows()
        csv_args = [
            ("format", "csv"),
            ("period", query.period),
            ("by", query.by),
            ("since", _day(query.since)),
            ("until", _day(query.until)),
            *(("group", g) for g in sorted(query.groups or ())),
        ]
        self.render(
            "usage.html",
            query=query,
            rows=rows,
            totals=totals(rows),
            warning=warning,
            since=_day(query.since),
            until=_day(query.until),
            container_chart=plot.stacked_bars(
                rows, field="container_hours", title="Container-hours"
            ),
            gpu_chart=plot.stacked_bars(rows, field="gpu_hours", title="GPU-hours"),
            csv_url=self.page_url("api", "usage") + "?" + urlencode(csv_args),
        )
