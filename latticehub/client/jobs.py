"""Jobs (options, submit, get, cancel, resubmit, list), storage use and the API document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import ClientBase, Page, next_token, query, segment

#: Jobs per listing request (the service's largest page).
JOBS_PAGE = 1000


class JobsAPI(ClientBase):
    """The job endpoints (mixed into :class:`~latticehub.client.TrackingClient`)."""

    def job_options(self) -> dict[str, dict[str, Any]]:
        """What each of your groups may ask for (``GET /jobs/options``), for launch forms.

        Returns:
            group -> its job limits: ``executors`` (those this service runs; the first is
            the default), ``partitions``, ``accounts``, ``max_jobs``, ``max_jobs_per_user``,
            ``max_nodes``, ``max_gpus``, ``max_cpus``, ``max_mem_mb``, ``max_time_s``,
            ``default_time_s``, ``default_mem_mb``, ``default_cpus``. Groups that may not
            submit jobs are left out.
        """
        return self.request("GET", "/jobs/options")["groups"]

    def submit_job(
        self,
        project: str,
        *,
        config: dict[str, Any] | None = None,
        resources: dict[str, Any] | None = None,
        group: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Launch a training job (``POST /jobs``); the service creates its run QUEUED.

        Args:
            project: the project's name (created in ``group`` if new).
            config: the ``flows.train`` config.
            resources: ``executor``, ``partition``, ``gpus``, ``cpus``, ``mem`` (``"4G"``),
                ``time`` (``"1:00:00"``) ...; left out: the group's defaults.
            group: the group to charge (default: the service picks yours).
            name: the run's name.

        Returns:
            The job (``id``, ``run_id``, ``state``, ``executor``, ``reason`` ...).

        Raises:
            TrackingAPIError: 400 naming the bad field, 429 at the group's job limit, 503
                when the executor is not available.
        """
        body: dict[str, Any] = {"project": project, "config": config or {},
                                "resources": resources or {}}  # fmt: skip
        body.update(query(group=group, name=name))
        return self.request("POST", "/jobs", body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job (state, the batch system's reason, node ...)."""
        return self.request("GET", f"/jobs/{segment(job_id)}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask the service to cancel a job (409 if it has ended); the job, now cancelling."""
        return self.request("DELETE", f"/jobs/{segment(job_id)}")

    def resubmit_job(self, job_id: str) -> dict[str, Any]:
        """A new job with the same project, config and resources; the new job."""
        return self.request("POST", f"/jobs/{segment(job_id)}/resubmit", {})

    def list_jobs_page(
        self,
        *,
        states: list[str] | None = None,
        groups: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """One page of the jobs you may see, newest first (``GET /jobs``).

        Args:
            states: only jobs in these states (``QUEUED``, ``RUNNING`` ...).
            groups: only jobs charged to these groups (yours).
            max_results: page size.
            page_token: the ``next_token`` of the previous page.

        The service pages by token (``_pagination.next_token`` or ``next_page_token``);
        older services page by offset (``_pagination.offset``): such a next offset comes
        back as the token ``"offset:<n>"``, which this method turns into ``offset=<n>``.
        """
        params = query(state=states or None, group=groups or None)
        if max_results is not None:
            params["max_results"] = params["limit"] = max_results  # either paging dialect
        if page_token and page_token.startswith("offset:"):
            params["offset"] = int(page_token.removeprefix("offset:"))
        elif page_token:
            params["page_token"] = page_token
        body = self.request("GET", "/jobs", params=params)
        token = next_token(body)
        offset = (body.get("_pagination") or {}).get("offset")
        if token is None and offset is not None:
            token = f"offset:{offset}"
        return Page(body["items"], token)

    def list_jobs(
        self, *, states: list[str] | None = None, groups: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every job you may see (filtered like :meth:`list_jobs_page`; pages followed)."""
        token: str | None = None
        while True:
            page = self.list_jobs_page(
                states=states, groups=groups, max_results=JOBS_PAGE, page_token=token
            )
            yield from page.items
            if not page.next_token or not page.items:
                return
            token = page.next_token

    def storage(self, groups: list[str] | None = None) -> dict[str, Any]:
        """Artifact storage in use and its cap, per group (``GET /storage``).

        Returns:
            ``{"items": [...], "capped": bool}``: your groups and your private projects by
            default.
        """
        return self.request("GET", "/storage", params=query(group=groups or None))

    def openapi(self) -> dict[str, Any]:
        """The service's OpenAPI document (``GET /openapi.json``)."""
        return self.request("GET", "/openapi.json")
