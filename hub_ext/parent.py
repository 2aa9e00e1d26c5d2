"""Managed services end with their Hub.

JupyterHub stops its managed services when it shuts down, but a Hub killed with SIGKILL (or
by the OOM killer) cannot: its services would keep their ports and tokens, and a restarted
Hub's new services would fail to bind. Each service therefore watches its parent process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any


def obey_interrupt() -> None:
    """Let SIGINT stop this service even when it was started with SIGINT ignored.

    JupyterHub stops a managed service with SIGINT first and waits ``interrupt_timeout``
    (10 s) before SIGTERM; a Hub started from a shell's background job passes SIGINT on
    ignored (as bash does for ``&``), and each service would then hold the Hub's shutdown for
    those seconds.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


async def stop_when_parent_gone(log: Any = None, *, interval: float = 1.0) -> None:
    """Stop the running event loop once the process that started this one is gone.

    The parent's pid is read when the watch starts; an orphan is re-parented (to init or a
    subreaper), so a different ``getppid()`` means the parent died.

    Args:
        log: a logger for the one warning.
        interval: seconds between two looks, e.g. 1.
    """
    log = log or logging.getLogger(__name__)
    parent = os.getppid()
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != parent:
            log.warning("the Hub (pid %s) is gone; stopping", parent)
            asyncio.get_running_loop().stop()
            return
