"""latticehub's ground floor: the vocabulary every package shares (stdlib only).

``units`` (sizes, CPUs), ``naming`` (safe names), ``limits`` (a group's share and the
arithmetic of a request against it), ``gpus`` (GPU assignment), ``slots`` (a server's hold on
a share) and ``labels`` (how slots are written on containers). Every other package may import
these; they import none of them (docs/architecture.md).
"""
