"""The ``culler`` service: stop idle servers with each group's own timeouts.

A Hub-managed process (``python -m hub_ext.culling``) that runs rounds of
``jupyterhub_idle_culler.cull_idle`` with a per-group decision: each server is judged by the
``idle_timeout``, ``idle_timeout_busy`` and ``max_age`` of the group it is charged to, taken
from the spawner's ``group_limits``. See docs/culling.md.
"""
