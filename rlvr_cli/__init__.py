"""rlvr: GRPO with verifiable rewards on GSM8K, from data preparation to SageMaker."""

__version__ = "0.1.0"
