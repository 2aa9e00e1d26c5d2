"""What the services' server-rendered pages share."""

from __future__ import annotations

import html

from tornado import web


def write_error_page(handler: web.RequestHandler, status_code: int, message: str) -> None:
    """Render ``error.html`` (status, reason, escaped message) for a failed page request.

    A template that fails to render must not hide the original error: a minimal page,
    escaped by hand, is sent instead and the failure is logged.
    """
    reason = handler._reason
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    try:
        handler.render("error.html", status_code=status_code, reason=reason, message=message)
    except Exception:
        handler.log.exception("rendering the error page failed")
        handler.finish(
            f"<!DOCTYPE html><title>{status_code}</title><h1>{status_code} "
            f"{html.escape(reason)}</h1><p>{html.escape(message)}</p>"
        )
