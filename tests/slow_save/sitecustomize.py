"""Imported at start-up by every Python process with this directory on PYTHONPATH (the container
tests' ranks, through the entry and torchrun): with SLOW_SAVE_S set, each checkpoint save of
rlvr's trainer starts that many seconds late, standing in for a large model written to slow
storage, so that a stop has to wait for it. Sleeping before the save means a rank killed meanwhile
leaves no complete checkpoint. Product code knows nothing of this."""

import importlib.abc
import importlib.util
import os
import sys
import time

DELAY = float(os.environ.get("SLOW_SAVE_S") or 0)
TRAINER = "rlvr_cli.training.trainer"


class _SlowSave(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TRAINER:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            cls = module.RlvrGRPOTrainer
            save = cls._save_checkpoint

            def slow_save(self, model, trial):
                time.sleep(DELAY)
                return save(self, model, trial)

            cls._save_checkpoint = slow_save

        spec.loader.exec_module = exec_module
        return spec


if DELAY:
    sys.meta_path.insert(0, _SlowSave())
