"""What the services share, owned by none of them.

The service base, the handlers' base (identity without blocking, JSON errors), the page
layout, the async Hub client and the Hub-config helpers. Services never import each other.
"""
