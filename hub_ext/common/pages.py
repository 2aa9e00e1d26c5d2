"""What the services' server-rendered pages share: the layout, the error page, the namespace.

Templates are looked up in the service's own ``template_path`` first, then in
:data:`TEMPLATE_DIR` here: ``layout.html`` (head, top bar, main, scripts) and ``error.html``.
A service's ``base.html`` extends ``layout.html`` and fills its blocks (``service_head``,
``service_nav``, ``service_scripts``); its pages extend ``base.html`` as before.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from jupyterhub.utils import url_path_join
from tornado import template, web

from .handlers import LiveHeadersMixin

#: The shared templates (``layout.html``, ``error.html``).
TEMPLATE_DIR = str(Path(__file__).parent / "templates")


class SearchPathLoader(template.Loader):
    """A template loader that looks in several directories, the first that has the name wins.

    Names are flat (``{% extends "base.html" %}`` means the first ``base.html`` on the path,
    whatever template extends it), so a shared template can extend a service's own.
    """

    def __init__(self, roots: list[str], **kwargs: Any) -> None:
        super().__init__(roots[0], **kwargs)
        self.roots = [os.path.abspath(r) for r in roots]

    def resolve_path(self, name: str, parent_path: str | None = None) -> str:  # noqa: D102
        return name

    def _create_template(self, name: str) -> template.Template:
        for root in self.roots:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    return template.Template(f.read(), name=name, loader=self)
        raise FileNotFoundError(f"no template {name!r} in {', '.join(self.roots)}")


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
        handler.log.exception("rendering the error page failed")  # type: ignore[attr-defined]
        handler.finish(
            f"<!DOCTYPE html><title>{status_code}</title><h1>{status_code} "
            f"{html.escape(reason)}</h1><p>{html.escape(message)}</p>"
        )


class PageMixin(LiveHeadersMixin):
    """A server-rendered page of a service (mix in before its ``ServiceHandler`` base).

    Answers are never framed by other sites nor cached (:class:`LiveHeadersMixin`).
    Templates see ``base`` (the prefix), ``page_url``, ``hub_home``, ``user_name``,
    ``service_title`` and ``error_links`` besides tornado's defaults; errors are an HTML page
    (``error.html``) with the status and the error's readable message.
    """

    #: the service's name in the top bar and page titles, e.g. ``"Quotas"``
    service_title = "latticehub"

    @property
    def prefix(self) -> str:
        """The service's URL prefix, e.g. ``/services/quotas/``."""
        settings = self.settings  # type: ignore[attr-defined]
        prefix = settings.get("service_prefix")
        if prefix:
            return prefix
        return settings["static_url_prefix"].removesuffix("static/")

    def page_url(self, *parts: str) -> str:
        """An absolute path under the service prefix (``parts`` as given: already quoted)."""
        return url_path_join(self.prefix, *parts)

    @property
    def hub_home(self) -> str:
        """The Hub's home page (``/hub/home``)."""
        return url_path_join(getattr(self.hub_auth, "hub_prefix", "/hub/"), "home")  # type: ignore[attr-defined]

    def error_links(self) -> list[tuple[str, str]]:
        """``(href, text)`` of the links under an error message."""
        return [(self.hub_home, "Hub home")]

    def create_template_loader(self, template_path: str) -> template.BaseLoader:
        """The service's templates, then the shared ones (:data:`TEMPLATE_DIR`)."""
        settings = self.settings  # type: ignore[attr-defined]
        kwargs = {k: settings[k] for k in ("autoescape", "whitespace") if k in settings}
        return SearchPathLoader([template_path, TEMPLATE_DIR], **kwargs)

    def get_template_namespace(self) -> dict[str, Any]:
        """What every template sees besides tornado's defaults."""
        namespace = super().get_template_namespace()  # type: ignore[misc]
        user = self.current_user  # type: ignore[attr-defined]
        namespace.update(
            base=self.prefix,
            page_url=self.page_url,
            hub_home=self.hub_home,
            user_name=user.get("name") if user else None,
            service_title=self.service_title,
            error_links=self.error_links(),
        )
        return namespace

    def check_form_xsrf(self) -> None:
        """Refuse a cookie-authenticated form without a valid ``_xsrf`` (HubOAuth's check).

        HubOAuth already declines cookie authentication of such requests; checking again
        here keeps the rule when the service sits behind another ``hub_auth``.
        """
        check = getattr(self.hub_auth, "check_xsrf_cookie", None)  # type: ignore[attr-defined]
        if check is not None:
            check(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as an HTML page with the status and a readable (escaped) message."""
        message = self.error_message(status_code, kwargs)  # type: ignore[attr-defined]
        write_error_page(self, status_code, message)  # type: ignore[arg-type]
