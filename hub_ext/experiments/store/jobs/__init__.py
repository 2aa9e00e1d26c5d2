"""The job store: entities (:mod:`.entities`), the ABC (:mod:`.abstract`), SQL (:mod:`.sql`).

Jobs, run events and job tokens, kept on the tracking database. These names stay importable
from ``hub_ext.experiments.jobs.store``, where they lived before.
"""

from .abstract import AbstractJobStore
from .entities import ACTIVE_STATES, Job, JobToken, RunEvent
from .sql import SqlJobStore

__all__ = ["ACTIVE_STATES", "AbstractJobStore", "Job", "JobToken", "RunEvent", "SqlJobStore"]
