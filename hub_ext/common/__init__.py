"""What the services share: the async Hub client and the Hub-config helpers.

No service's own code lives here, and services never import each other.
"""
