"""Notebook panels (ipywidgets) of latticehub; filled by later work."""
