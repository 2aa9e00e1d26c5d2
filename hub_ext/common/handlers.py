"""What every service's request handlers share: the caller from the Hub, and JSON errors.

:class:`ServiceHandler` identifies the caller in an async ``prepare`` (``HubAuth.get_user``
with ``sync=False``), so that a token missing from the Hub token cache never blocks the event
loop: ``HubAuthenticated.get_current_user`` would ask the Hub synchronously, from a helper
thread the loop waits on. Afterwards ``self.current_user`` is a plain read.

:class:`JSONErrorMixin` maps a coded domain error (``code``, ``message``, ``http_status``)
to its HTTP status once, and writes every error as ``{"status", "error_code", "message"}``
(JupyterHub's ``status`` and ``message``, MLflow's ``error_code``).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from jupyterhub.services.auth import HubAuth, HubOAuthenticated, UserNotAllowed
from tornado import web

#: The ``error_code`` of an error that names no code of its own, by HTTP status; other
#: statuses: ``BAD_REQUEST`` below 500, ``INTERNAL_ERROR`` from 500.
STATUS_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "CONFLICT",
    413: "RESOURCE_LIMIT_EXCEEDED",
}
#: The message of an unexpected failure (its traceback goes to the service's log).
INTERNAL_MESSAGE = "Internal error: the service's log has the details."


def code_for_status(status: int) -> str:
    """The ``error_code`` of an error with only an HTTP status.

    >>> code_for_status(403), code_for_status(405), code_for_status(502)
    ('PERMISSION_DENIED', 'BAD_REQUEST', 'INTERNAL_ERROR')
    """
    return STATUS_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")


class ServiceError(Exception):
    """A refusal for the caller: HTTP ``status_code``, a readable ``message``, a ``code``.

    Args:
        status_code: the HTTP status, e.g. 403.
        message: what went wrong and how to fix it.
        code: the ``error_code`` (default: :func:`code_for_status` of the status).
    """

    def __init__(self, status_code: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code or code_for_status(status_code)

    @property
    def http_status(self) -> int:
        """The HTTP status for this error."""
        return self.status_code


class JSONErrorMixin:
    """Errors as ``{"status", "error_code", "message"}``; domain errors mapped to HTTP once.

    A domain error is an instance of :attr:`domain_errors` with ``code``, ``message`` and
    ``http_status``; it is the caller's mistake, logged in one line without a traceback.
    Mix into a ``tornado.web.RequestHandler`` (before it in the bases).
    """

    #: the exception types this service raises for its callers
    domain_errors: tuple[type[Exception], ...] = (ServiceError,)

    def domain_error(self, kwargs: dict[str, Any]) -> Any:
        """The domain error being written (``send_error``'s kwargs), or None."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        return exc if isinstance(exc, self.domain_errors) else None

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Use a domain error's own status."""
        error = self.domain_error(kwargs)
        if error is not None:
            status_code = error.http_status
        super().send_error(status_code, **kwargs)  # type: ignore[misc]

    def error_message(self, status_code: int, kwargs: dict[str, Any]) -> str:
        """The readable message of the error being written."""
        error = self.domain_error(kwargs)
        if error is not None:
            return error.message
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            return exc.log_message % exc.args  # tornado doubles a % when there are no args
        if status_code >= 500:
            return INTERNAL_MESSAGE
        return self._reason  # type: ignore[attr-defined]

    def error_body(self, status_code: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``{"status", "error_code", "message"}`` of the error being written."""
        error = self.domain_error(kwargs)
        return {
            "status": status_code,
            "error_code": error.code if error is not None else code_for_status(status_code),
            "message": self.error_message(status_code, kwargs),
        }

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the error as JSON."""
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps(self.error_body(status_code, kwargs)))  # type: ignore[attr-defined]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Callers' mistakes are logged briefly, without a traceback."""
        if isinstance(value, self.domain_errors):
            request = self.request  # type: ignore[attr-defined]
            self.log.info("%s %s: %s", request.method, request.path, value.message)  # type: ignore[attr-defined]
        else:
            super().log_exception(typ, value, tb)  # type: ignore[misc]


class LiveHeadersMixin:
    """Answers that show live state: never framed by other sites, never cached."""

    def set_default_headers(self) -> None:
        """``X-Frame-Options``, ``Cache-Control: no-store``, ``nosniff``."""
        self.set_header("X-Frame-Options", "SAMEORIGIN")  # type: ignore[attr-defined]
        self.set_header("Cache-Control", "no-store")  # type: ignore[attr-defined]
        self.set_header("X-Content-Type-Options", "nosniff")  # type: ignore[attr-defined]


async def hub_user(auth: Any, handler: web.RequestHandler) -> dict[str, Any] | None:
    """The Hub's model of the request's caller, without blocking the loop.

    A ``HubAuth`` is asked with ``sync=False``; a stand-in (tests) may answer at once.
    """
    if isinstance(auth, HubAuth):
        found = auth.get_user(handler, sync=False)
    else:
        found = auth.get_user(handler)
    return await found if inspect.isawaitable(found) else found


class ServiceHandler(JSONErrorMixin, HubOAuthenticated, web.RequestHandler):
    """The base of every service's handlers: the caller, found in an async ``prepare``.

    Settings read: ``hub_auth`` (a ``HubOAuth`` or stand-in) and ``log``.

    Attributes:
        refused: the model of a caller the Hub identified but this service does not admit
            (``HubAuthenticated.check_hub_user``); ``current_user`` is then None.
    """

    refused: dict[str, Any] | None = None

    @property
    def hub_auth(self) -> Any:  # noqa: D102 - from HubAuthenticated
        return self.settings["hub_auth"]

    @property
    def log(self) -> Any:  # noqa: D102
        return self.settings["log"]

    def hub_identity_wanted(self) -> bool:
        """Whether to ask the Hub who the caller is (False: a credential of the service's own)."""
        return True

    async def identify(self) -> dict[str, Any] | None:
        """Find the caller once per request (``HubAuthenticated.get_current_user``, async).

        A caller the service does not admit is remembered in :attr:`refused`; as in
        ``HubAuthenticated``, a login redirect then answers 403 instead.
        """
        if hasattr(self, "_hub_auth_user_cache"):
            return self._hub_auth_user_cache
        self._hub_auth_user_cache: dict[str, Any] | None = None
        model = await hub_user(self.hub_auth, self) if self.hub_identity_wanted() else None
        if model:
            try:
                model = self.check_hub_user(model)
            except UserNotAllowed:
                self.refused, model = model, None
                self.redirect = self._refuse_redirect  # type: ignore[method-assign]
            else:
                persist = getattr(self.hub_auth, "_persist_url_token_if_set", None)
                if persist is not None:
                    persist(self)
        self._hub_auth_user_cache = model or None
        self.current_user = model or None
        return self._hub_auth_user_cache

    def _refuse_redirect(self, *args: Any, **kwargs: Any) -> None:
        raise self.refused_error()

    def refused_error(self) -> Exception:
        """The 403 for a caller the Hub identified whom this service does not admit."""
        model = self.refused or {}
        return web.HTTPError(
            403, "%s %s is not allowed.", model.get("kind", "user"), model.get("name")
        )

    def get_current_user(self) -> Any:
        """What :meth:`identify` found (None before it ran): never a request to the Hub."""
        return getattr(self, "_hub_auth_user_cache", None)

    def wants_login(self) -> bool:
        """Whether a caller without a session is sent to the Hub's login (pages: GET)."""
        return False

    async def prepare(self) -> None:
        """Identify the caller; send a browser without a session through the Hub's login."""
        await self.identify()
        if self.current_user or not self.wants_login():
            return
        if self.refused is not None:
            raise self.refused_error()
        self.redirect(self.get_login_url())

    def write_json(self, data: Any, status: int = 200) -> None:
        """Send ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, allow_nan=False))
