"""JupyterHub services of latticehub (``experiments``, ``quotas``); filled by later work."""
