"""`rlvr train`: GRPO with TRL on this machine, its run record, and the fast paths it runs with.

Importing this package file costs nothing; its modules import torch, transformers and trl where they
need them."""
