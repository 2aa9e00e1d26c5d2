"""Listing jobs by keyset (on SQLite and PostgreSQL): every job once, stable under inserts."""

from __future__ import annotations

import uuid

import pytest

from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job, SqlJobStore

T0 = 1_800_000_000_000


def add_jobs(store, jobs: SqlJobStore, created: list[int], *, group="lqcd", user="ann") -> list:
    """One job (and its run) per ``created`` time, in group ``group``."""
    project = store.create_project(f"p-{uuid.uuid4().hex[:8]}", owner=user, group=group)
    made = []
    for when in created:
        run = store.create_run(project.id, user=user, start_time=when)
        job = Job(
            id=uuid.uuid4().hex, run_id=run.id, project_id=project.id, user=user, group=group,
            executor="local", state=JobState.QUEUED, created=when,
        )  # fmt: skip
        made.append(jobs.create_job(job))
    return made


def newest_first(jobs: list[Job]) -> list[str]:
    return [j.id for j in sorted(jobs, key=lambda j: (-j.created, j.id))]


def page_all(jobs: SqlJobStore, size: int, **filters) -> list[list[str]]:
    """Every page, following the keyset of each page's last job."""
    pages, after = [], None
    while True:
        page = jobs.list_jobs(limit=size, after=after, **filters)
        if page:
            pages.append([j.id for j in page])
        if len(page) < size:
            return pages
        after = (page[-1].created, page[-1].id)


# times with ties: jobs created in the same millisecond are ordered by id
TIMES = [T0 + d for d in (0, 5, 5, 5, 9, 12, 12, 20, 31, 31, 31, 31, 40)]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 13, 50])
def test_keyset_pages_list_every_job_once_in_order(store, size):
    jobs = SqlJobStore(store.engine)
    made = add_jobs(store, jobs, TIMES)
    pages = page_all(jobs, size)
    assert [j for page in pages for j in page] == newest_first(made)
    assert all(len(p) == size for p in pages[:-1])


def test_jobs_added_between_pages_neither_shift_nor_repeat_a_page(store):
    jobs = SqlJobStore(store.engine)
    made = add_jobs(store, jobs, TIMES)
    first = jobs.list_jobs(limit=5)
    newer = add_jobs(store, jobs, [T0 + 100, T0 + 101])  # submitted while paging: sort first
    rest = jobs.list_jobs(limit=100, after=(first[-1].created, first[-1].id))
    assert [j.id for j in first + rest] == newest_first(made)
    assert not {j.id for j in newer} & {j.id for j in rest}
    # the offset that this replaces would have repeated two jobs of the first page
    shifted = jobs.list_jobs(limit=100, offset=5)
    assert [j.id for j in shifted[:2]] == [j.id for j in first[-2:]]


def test_the_keyset_keeps_the_filters(store):
    jobs = SqlJobStore(store.engine)
    ours = add_jobs(store, jobs, TIMES[:6])
    add_jobs(store, jobs, TIMES[:6], group="nuclear", user="bob")
    pages = page_all(jobs, 2, groups=["lqcd"])
    assert [j for page in pages for j in page] == newest_first(ours)
    jobs.update_job(ours[0].id, state=JobState.RUNNING)
    running = jobs.list_jobs(states=["RUNNING"], after=(T0 + 100, "f" * 32))
    assert [j.id for j in running] == [ours[0].id]
    assert jobs.list_jobs(states=["RUNNING"], after=(ours[0].created, ours[0].id)) == []
