"""Normalizing flows for lattice field theory; filled by later work."""
