"""pytest collects the package too, for the examples in its docstrings (`--doctest-modules`)."""

collect_ignore = ["rlvr_cli/__main__.py"]  # importing it runs the CLI
