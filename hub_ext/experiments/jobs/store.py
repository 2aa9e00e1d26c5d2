"""Where the job store lived before it joined the other stores of the tracking database.

Kept so that ``from hub_ext.experiments.jobs.store import Job, SqlJobStore`` goes on working.
The entities, the ABC and the SQL back end are in :mod:`hub_ext.experiments.store.jobs`
(``entities``, ``abstract``, ``sql``), the layout of every store; a tracking store hands out
its job store with :meth:`~hub_ext.experiments.store.AbstractStore.job_store`.
"""

from ..store.jobs import ACTIVE_STATES, AbstractJobStore, Job, JobToken, RunEvent, SqlJobStore

__all__ = ["ACTIVE_STATES", "AbstractJobStore", "Job", "JobToken", "RunEvent", "SqlJobStore"]
