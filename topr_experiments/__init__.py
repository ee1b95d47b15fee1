"""The TOPR experiments of RESULTS.md, one file per section (experiments.py's docstring maps them)."""
