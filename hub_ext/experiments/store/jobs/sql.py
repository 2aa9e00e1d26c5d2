"""The job store on the tracking database (SQLite or PostgreSQL).

Tables ``lh_jobs``, ``lh_run_events`` and ``lh_job_tokens`` of
:mod:`hub_ext.experiments.store.schema`, beside the runs, so that a job and its run change
in the same place.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from .. import schema as t
from ..abstract import now_ms
from ..entities import JobState
from ..errors import not_found
from .abstract import AbstractJobStore
from .entities import ACTIVE_STATES, Job, JobToken, RunEvent


def _job(row: Any) -> Job:
    return Job(
        id=row.job_id,
        run_id=row.run_id,
        project_id=row.project_id,
        user=row.user_id,
        group=row.group_name,
        executor=row.executor,
        state=JobState(row.state),
        created=row.created,
        resources=json.loads(row.resources or "{}"),
        config=json.loads(row.config or "{}"),
        external_id=row.external_id,
        reason=row.reason or "",
        workdir=row.workdir or "",
        node=row.node or "",
        exit_code=row.exit_code,
        started=row.started,
        ended=row.ended,
        resubmit_of=row.resubmit_of,
    )


_COLUMNS = {
    "state": "state",
    "reason": "reason",
    "external_id": "external_id",
    "node": "node",
    "exit_code": "exit_code",
    "started": "started",
    "ended": "ended",
    "workdir": "workdir",
}


class SqlJobStore(AbstractJobStore):
    """Jobs on the tracking database's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create_job(self, job: Job) -> Job:  # noqa: D102
        with self.engine.begin() as conn:
            conn.execute(
                t.jobs.insert().values(
                    job_id=job.id,
                    run_id=job.run_id,
                    project_id=job.project_id,
                    user_id=job.user,
                    group_name=job.group,
                    executor=job.executor,
                    external_id=job.external_id,
                    state=job.state.value,
                    reason=job.reason,
                    resources=json.dumps(job.resources),
                    config=json.dumps(job.config),
                    workdir=job.workdir,
                    created=job.created,
                    resubmit_of=job.resubmit_of,
                )
            )
        return job

    def get_job(self, job_id: str) -> Job:  # noqa: D102
        with self.engine.connect() as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).first()
        if row is None:
            raise not_found(f"Job with id={job_id}")
        return _job(row)

    def update_job(self, job_id: str, **changes: Any) -> Job:  # noqa: D102
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"cannot change job field(s) {sorted(unknown)}")
        values = {
            _COLUMNS[k]: (v.value if isinstance(v, JobState) else v) for k, v in changes.items()
        }
        with self.engine.begin() as conn:
            done = conn.execute(t.jobs.update().where(t.jobs.c.job_id == job_id).values(**values))
            if done.rowcount == 0:
                raise not_found(f"Job with id={job_id}")
        return self.get_job(job_id)

    def list_jobs(  # noqa: D102
        self,
        *,
        users: list[str] | None = None,
        groups: list[str] | None = None,
        states: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        after: tuple[int, str] | None = None,
    ) -> list[Job]:
        query = select(t.jobs)
        visible = []
        if users is not None:
            visible.append(t.jobs.c.user_id.in_(users))
        if groups is not None:
            visible.append(t.jobs.c.group_name.in_(groups))
        if visible:
            query = query.where(sa.or_(*visible))
        if states:
            query = query.where(t.jobs.c.state.in_(states))
        if after is not None:
            created, job_id = after
            query = query.where(
                sa.or_(
                    t.jobs.c.created < created,
                    sa.and_(t.jobs.c.created == created, t.jobs.c.job_id > job_id),
                )
            )
        query = query.order_by(t.jobs.c.created.desc(), t.jobs.c.job_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    def count_active(self, group: str) -> dict[str, int]:  # noqa: D102
        query = (
            select(t.jobs.c.user_id, func.count())
            .where(t.jobs.c.group_name == group, t.jobs.c.state.in_(ACTIVE_STATES))
            .group_by(t.jobs.c.user_id)
        )
        with self.engine.connect() as conn:
            return {user: count for user, count in conn.execute(query)}

    def add_event(self, run_id: str, kind: str, message: str, time: int | None = None) -> None:  # noqa: D102
        with self.engine.begin() as conn:
            conn.execute(
                t.run_events.insert().values(
                    run_id=run_id, time=time or now_ms(), kind=kind, message=message
                )
            )

    def list_events(self, run_id: str) -> list[RunEvent]:  # noqa: D102
        query = (
            select(t.run_events)
            .where(t.run_events.c.run_id == run_id)
            .order_by(t.run_events.c.event_id)
        )
        with self.engine.connect() as conn:
            return [RunEvent(r.run_id, r.time, r.kind, r.message) for r in conn.execute(query)]

    def add_token(self, token: JobToken) -> None:  # noqa: D102
        with self.engine.begin() as conn:
            conn.execute(t.job_tokens.insert().values(**_token_values(token)))

    def find_token(self, token_hash: str) -> JobToken | None:  # noqa: D102
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.job_tokens).where(t.job_tokens.c.token_hash == token_hash)
            ).first()
        return None if row is None else _token(row)

    def revoke_tokens(self, job_id: str) -> list[JobToken]:  # noqa: D102
        where = (t.job_tokens.c.job_id == job_id) & (t.job_tokens.c.revoked == sa.false())
        with self.engine.begin() as conn:
            live = [_token(r) for r in conn.execute(select(t.job_tokens).where(where))]
            conn.execute(t.job_tokens.update().where(where).values(revoked=True))
        return live


def _token_values(token: JobToken) -> dict[str, Any]:
    return {
        "token_hash": token.token_hash,
        "job_id": token.job_id,
        "run_id": token.run_id,
        "user_id": token.user,
        "hub_token_id": token.hub_token_id,
        "expires": token.expires,
        "revoked": token.revoked,
    }


def _token(row: Any) -> JobToken:
    return JobToken(
        token_hash=row.token_hash,
        job_id=row.job_id,
        run_id=row.run_id,
        user=row.user_id,
        expires=row.expires,
        hub_token_id=row.hub_token_id,
        revoked=bool(row.revoked),
    )
