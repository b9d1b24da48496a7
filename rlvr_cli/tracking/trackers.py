"""Experiment tracking: MLflow, or a null tracker with the same methods when `report_to: none`.

The trainer and evaluator call the tracker unconditionally; `NullTracker` makes "no tracking" a
choice of object, not `if tracker:` branches through the code.

Where runs go, first match wins:
1. the recipe's `mlflow_tracking_uri`;
2. `$MLFLOW_TRACKING_URI` (a SageMaker managed MLflow ARN works when `sagemaker-mlflow` is installed);
3. an embedded sqlite store, `sqlite:///mlruns/mlflow.db` in the working directory, with artifacts
   in `mlruns/artifacts`. Browse it with `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from rlvr_cli.core.errors import RlvrError, first_line

DEFAULT_DIR = Path("mlruns")
MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit
MAX_PARAM_LENGTH = 6000


class Tracker(Protocol):
    run_id: str | None
    tracking_uri: str | None
    experiment: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracks nothing. Same interface as MLflowTracker."""

    run_id = None
    tracking_uri = None
    experiment = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def resolve_tracking_uri(configured: str | None) -> tuple[str, bool]:
    """The tracking URI to use, and whether it is rlvr's embedded default."""
    if configured:
        return configured, False
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], False
    return f"sqlite:///{(DEFAULT_DIR / 'mlflow.db').resolve()}", True


class MLflowTracker:
    """One MLflow run. `run_id` given: continue that run (a resumed training, an eval of it)."""

    def __init__(
        self,
        *,
        tracking_uri: str | None,
        experiment: str,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        uri, embedded = resolve_tracking_uri(tracking_uri)
        if uri.startswith("arn:"):
            try:
                import sagemaker_mlflow  # noqa: F401  (registers the arn: tracking store)
            except ImportError as exc:
                raise RlvrError(
                    "a SageMaker MLflow ARN as tracking URI needs the sagemaker-mlflow package: pip install sagemaker-mlflow"
                ) from exc
        import logging

        import mlflow

        # MLflow's database set-up logs at INFO on first use of a sqlite store: not for users.
        for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.db"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = uri
        self.experiment = experiment
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        try:
            if embedded:
                DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
            found = self._client.get_experiment_by_name(experiment)
            if found is None:
                artifact_location = (DEFAULT_DIR / "artifacts").resolve().as_uri() if embedded else None
                experiment_id = self._client.create_experiment(
                    experiment, artifact_location=artifact_location
                )
            else:
                experiment_id = found.experiment_id
            if run_id:
                self._client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            else:
                run = self._client.create_run(experiment_id, run_name=run_name, tags=tags or {})
                self.run_id = run.info.run_id
        except RlvrError:
            raise
        except Exception as exc:
            raise RlvrError(
                f"MLflow at {uri} is not usable ({first_line(exc)}); "
                "fix MLFLOW_TRACKING_URI or set report_to: none"
            ) from exc

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_CALL):
            self._client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_CALL])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_metric_key(k), float(v), now, step or 0) for k, v in metrics.items() if _is_number(v)
        ]
        for i in range(0, len(items), 1000):
            self._client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        if not rows:
            return
        columns = {key: [row.get(key) for row in rows] for key in rows[0]}
        self._client.log_table(self.run_id, data=columns, artifact_file=artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self._client.log_dict(self.run_id, data, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status=status)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def _metric_key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . / and spaces; TRL's keys fit, others are cleaned.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_LENGTH]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"remote": {"region": "x"}} -> {"remote.region": "x"}, for logging a recipe as params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def make_tracker(
    report_to: list[str],
    *,
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None = None,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Tracker:
    if "mlflow" not in report_to:
        return NullTracker()
    return MLflowTracker(
        tracking_uri=tracking_uri, experiment=experiment, run_name=run_name, run_id=run_id, tags=tags
    )
