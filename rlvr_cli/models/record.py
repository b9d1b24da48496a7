"""The run record, `OUTPUT/rlvr_run.json`: what a training run was made of and how it ended.

It records the resolved recipe, the task, the model, the data's checksums, the effective device
and precision, package versions and the MLflow run, so any adapter can be traced back to exactly
what produced it. `rlvr eval` reads it to find a checkpoint's base model and MLflow run.

Statuses (`RunStatus`), written by `rlvr train` and the SageMaker container alike:

    running      written when training starts; a record still "running" after the process ended
                 means the process was killed (SIGKILL, out of memory, power)
    completed    trained and saved: adapter, tokenizer, metrics, plot (and merged model with --merge)
    interrupted  stopped by SIGTERM or the first Ctrl-C after a step, with a checkpoint to resume
    failed       an error anywhere after the start, during training or while saving; `error` says
                 which, in one line
    aborted      a second Ctrl-C: stopped at once, without a checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from rlvr_cli.core.errors import one_line
from rlvr_cli.core.files import read_json_object, write_json

RUN_FILE = "rlvr_run.json"
RunStatus = Literal["running", "completed", "interrupted", "failed", "aborted"]
STATUSES: tuple[RunStatus, ...] = ("running", "completed", "interrupted", "failed", "aborted")


@dataclass
class RunRecord:
    """`rlvr_run.json`. The keys after `checkpoint_dir` appear once they mean something (see `to_dict`)."""

    rlvr_version: str = ""
    status: RunStatus = "running"
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_fingerprint: str = ""
    task: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # name (as written), kind, path
    data: dict[str, Any] = field(default_factory=dict)  # train file and checksum, prepare manifest
    environment: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    longest_prompt_tokens: int | None = None
    mlflow: dict[str, Any] | None = field(default_factory=dict)  # tracking_uri, experiment, run_id
    resumed_from: str | None = None
    checkpoint_dir: str | None = None
    # Once training ended (completed or interrupted):
    global_step: int | None = None
    seconds_per_step: float | None = None
    final_metrics: dict[str, Any] | None = None
    # Interrupted: the signal and the checkpoint to resume from.
    interrupted_by: str | None = None
    checkpoint: str | None = None
    # Completed: the merged model (--merge) and the reward plot (None when nothing was logged).
    merged: str | None = None
    reward_curves: str | None = None
    # Failed: the error in one line.
    error: str | None = None

    @property
    def base_model(self) -> str | None:
        """The model the run trained from, as the user named it (e.g. an offline model's short name)."""
        name = self.model.get("name")
        return name if isinstance(name, str) and name else None

    def ended(self, global_step: int, durations: list[float], history: list[dict[str, Any]]) -> None:
        """Training ended: the step reached, seconds per step, and the last training log's metrics."""
        final = next((h for h in reversed(history) if "reward" in h), {})
        self.global_step = global_step
        self.seconds_per_step = sum(durations) / len(durations) if durations else None
        self.final_metrics = {k: v for k, v in final.items() if isinstance(v, int | float)}

    def fail(self, exc: BaseException) -> None:
        self.status = "failed"
        self.error = one_line(exc)

    def to_dict(self, *, complete: bool = False) -> dict[str, Any]:
        """The JSON form. In the file, keys for an outcome the run did not have are left out rather
        than written as null; `complete` keeps every key (`rlvr train --json`: one shape always)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if complete:
            return data
        trained = self.global_step is not None
        present = {
            "global_step": trained,
            "seconds_per_step": trained,
            "final_metrics": trained,
            "interrupted_by": self.interrupted_by is not None,
            "checkpoint": self.checkpoint is not None,
            "merged": self.merged is not None,
            "reward_curves": self.status == "completed",
            "error": self.error is not None,
        }
        return {k: v for k, v in data.items() if present.get(k, True)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Tolerant: a record by an older rlvr, or one written by hand, keeps what it has."""
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        for name in ("recipe", "task", "model", "data", "environment", "versions"):
            if not isinstance(getattr(record, name), dict):  # edited by hand: read as unknown
                setattr(record, name, {})
        if record.mlflow is not None and not isinstance(record.mlflow, dict):
            record.mlflow = None
        return record

    def write(self, directory: Path) -> None:
        write_json(directory / RUN_FILE, self.to_dict())

    @classmethod
    def read(cls, directory: Path) -> RunRecord | None:
        """The record in `directory`, or None when there is none (or it is not a JSON object)."""
        data = read_json_object(directory / RUN_FILE)
        return cls.from_dict(data) if data is not None else None
