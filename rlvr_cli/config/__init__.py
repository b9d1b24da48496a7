"""Recipes: the schema, YAML loading with line numbers, `--set` overrides, the README table.

This package file imports nothing: `rlvr_cli.config.patterns` and `rlvr_cli.config.fingerprint` stay
importable without pydantic (the SageMaker control plane uses them)."""
