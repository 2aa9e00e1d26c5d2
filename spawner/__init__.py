"""Group-limited Docker and Swarm spawners for JupyterHub.

``GroupLimitDockerSpawner`` (entry point ``groupdocker``) and ``GroupLimitSwarmSpawner``
(``groupswarm``) enforce per-group shares: servers per group and per user, memory, CPU,
GPUs, images and nodes.
"""

from latticehub.limits import GroupLimits, LimitError

from .docker import GroupLimitDockerSpawner
from .swarm import GroupLimitSwarmSpawner

__all__ = ["GroupLimitDockerSpawner", "GroupLimitSwarmSpawner", "GroupLimits", "LimitError"]
