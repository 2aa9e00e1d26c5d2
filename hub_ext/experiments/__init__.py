"""The ``experiments`` service: experiment tracking for latticehub (store, APIs, client)."""
