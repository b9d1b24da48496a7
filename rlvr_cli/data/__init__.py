"""Prepared datasets: building them from a task's problems, their layout and manifest, `rlvr prepare`."""
