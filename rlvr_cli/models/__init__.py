"""Model sources: Hub ids, local directories, offline models from wheels; loading with one-line errors."""
