"""The ``quotas`` service: live per-group usage against the limits, and lowering by managers.

Pages and a JSON API under ``/services/quotas/`` for admins (every group) and group managers
(their groups): servers holding each group's slots, pending and queued spawns, per-node
usage, and a form that lowers a group's values within the admin's ceilings. Truth comes
from the Hub API and the Docker engine (container / service labels) on every request.
See docs/quotas.md.
"""
