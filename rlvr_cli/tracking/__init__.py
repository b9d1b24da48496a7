"""Experiment tracking (MLflow or nothing) and the reward-curve plot."""
