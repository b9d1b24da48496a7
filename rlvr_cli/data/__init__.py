"""Prepared datasets: building them from a task's problems, their on-disk layout and manifest, and the
`rlvr prepare` command."""
