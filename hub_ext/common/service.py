"""The base of latticehub's Hub-managed services: where to listen, how to serve, when to stop.

Each service (``experiments``, ``quotas``, ``culler``) is a traitlets ``Application`` started
by JupyterHub with ``JUPYTERHUB_SERVICE_URL`` in its environment. :class:`HubManagedApp` gives
every one of them ``exit_with_hub``; :class:`WebServiceApp` adds the address from the Hub's
environment, a bind that waits for a port still held by a killed predecessor, and the event
loop with the service's background tasks. :class:`OAuthCallbackHandler` completes Hub OAuth
with the application's own ``HubOAuth`` object.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado.httpserver import HTTPServer
from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import Application

from ..parent import stop_when_parent_gone


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """Completes Hub OAuth with the app's own ``HubOAuth`` (it holds the login state)."""

    @property
    def hub_auth(self) -> Any:  # noqa: D102
        return self.settings["hub_auth"]


class HubManagedApp(Application):
    """A service the Hub starts and stops."""

    exit_with_hub = Bool(
        True,
        help="""
        Exit when the Hub that started this service is gone (its parent process changes).
        A Hub killed with SIGKILL cannot stop its managed services; without this the old
        service would keep its port and tokens, and act for a Hub that no longer runs. Set
        False when running the service by hand, outside a Hub.
        """,
    ).tag(config=True)


class WebServiceApp(HubManagedApp):
    """A managed service with an HTTP server (subclasses set :attr:`default_port`)."""

    #: the port when ``$JUPYTERHUB_SERVICE_URL`` names none
    default_port = 10101

    ip = Unicode(
        help="""
        Address to listen on, e.g. 127.0.0.1 (only the Hub's proxy reaches it) or the user
        containers' network gateway, e.g. 172.17.0.1 (notebooks reach it directly).
        Default: the host of ``$JUPYTERHUB_SERVICE_URL``, else 127.0.0.1.
        """,
    ).tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        return urlsplit(url).hostname or "127.0.0.1"

    port = Int(
        help="Port to listen on, e.g. 10101. Default: the port of ``$JUPYTERHUB_SERVICE_URL``."
    ).tag(config=True)

    @default("port")
    def _default_port(self) -> int:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        return urlsplit(url).port or self.default_port

    @validate("port")
    def _valid_port(self, proposal: Any) -> int:
        if not 0 < proposal.value < 65536:
            raise TraitError(f"port={proposal.value}: use a TCP port from 1 to 65535, e.g. 10101")
        return proposal.value

    bind_timeout = Float(
        20.0,
        help="""
        Seconds to keep retrying when the port is still taken at start (for example by the
        previous instance of a Hub that was killed and restarted), e.g. 20; 0 fails at once.
        """,
    ).tag(config=True)

    @validate("bind_timeout")
    def _valid_bind_timeout(self, proposal: Any) -> float:
        if proposal.value < 0:
            raise TraitError(f"bind_timeout={proposal.value}: use seconds >= 0, e.g. 20")
        return float(proposal.value)

    def listen(self, app: Any, *, max_body_size: int) -> HTTPServer:
        """Serve ``app`` on ``ip:port``, retrying for ``bind_timeout`` while the port is taken.

        Args:
            app: the tornado application (or a wrapper that limits bodies).
            max_body_size: the server-wide request body limit in bytes.
        """
        server = HTTPServer(app, xheaders=True, max_body_size=max_body_size)
        deadline = time.monotonic() + self.bind_timeout
        while True:
            try:
                server.listen(self.port, self.ip)
                return server
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                self.log.warning("port %s is taken; retrying", self.port)
                time.sleep(0.5)

    def run_forever(self, *background: Coroutine[Any, Any, Any]) -> None:
        """Run the event loop with the service's background tasks (and the Hub watch)."""
        loop = asyncio.get_event_loop_policy().get_event_loop()
        # keep references: the loop holds tasks only weakly
        self._tasks = [loop.create_task(c) for c in background]
        if self.exit_with_hub:
            self._tasks.append(loop.create_task(stop_when_parent_gone(self.log)))
        loop.run_forever()
