"""Job launch policy for the ``experiments`` service (pure modules, no I/O).

``spec`` validates a job request against the admins' per-group limits, ``sbatch``
renders the Slurm batch script, and ``states`` maps Slurm's job states to job and
run statuses and parses the output of ``sbatch``/``squeue``.
"""
