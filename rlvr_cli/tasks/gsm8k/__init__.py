"""GSM8K: reading `#### The final answer is N`, its rewards, and its sources (Hub, local copy, generator)."""

from rlvr_cli.tasks.gsm8k.task import GSM8KTask

__all__ = ["GSM8KTask"]
