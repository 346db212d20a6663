"""Compiled Cython extensions built from ext/ (see setup.py)."""
