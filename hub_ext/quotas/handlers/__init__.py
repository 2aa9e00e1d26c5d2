"""Request handlers of the quotas service: JSON API and server-rendered pages.

``default_handlers`` holds ``(path regex, handler)`` relative to the service prefix.
"""

from __future__ import annotations

from .groups import GroupAPIHandler, GroupLimitsAPIHandler, GroupListAPIHandler
from .nodes import NodeListAPIHandler
from .pages import GroupPage, OverviewPage
from .usage import UsageAPIHandler, UsagePage

default_handlers: list = [
    (r"/api/groups", GroupListAPIHandler),
    (r"/api/groups/([^/]+)", GroupAPIHandler),
    (r"/api/groups/([^/]+)/limits", GroupLimitsAPIHandler),
    (r"/api/nodes", NodeListAPIHandler),
    (r"/api/usage", UsageAPIHandler),
    (r"/", OverviewPage),
    (r"/groups/([^/]+)", GroupPage),
    (r"/usage", UsagePage),
]
