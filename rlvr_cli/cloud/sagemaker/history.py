"""The small local record of submitted jobs and uploads, so `status`, `logs`, `stop` and
`eval --job` default to the latest job and `train --remote` to the last uploaded data.

Stored in `$RLVR_STATE_DIR/state.json`, default `$XDG_CONFIG_HOME/rlvr/` (`~/.config/rlvr/`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlvr_cli.config.patterns import JOB_NAME
from rlvr_cli.core.errors import ExitCode, RlvrError
from rlvr_cli.core.files import read_json_object, write_json

MAX_JOBS = 50
# `rlvr eval --job` without a name: the latest job. Not a valid job name, so it cannot clash with one.
LATEST_JOB = "@latest"


def state_path() -> Path:
    if os.environ.get("RLVR_STATE_DIR"):
        return Path(os.environ["RLVR_STATE_DIR"]) / "state.json"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "rlvr" / "state.json"


def load() -> dict[str, Any]:
    """The state, with what is not in the shape rlvr writes (a hand-edited or corrupt file) left
    out: a job needs a name, the last upload is an S3 URI."""
    data = read_json_object(state_path()) or {}
    jobs = data.get("jobs")
    data["jobs"] = (
        [j for j in jobs if isinstance(j, dict) and isinstance(j.get("name"), str)]
        if isinstance(jobs, list)
        else []
    )
    if not isinstance(data.get("last_data_uri"), str):
        data.pop("last_data_uri", None)
    return data


def save(state: dict[str, Any]) -> None:
    write_json(state_path(), state)


def record_job(name: str, region: str | None, profile: str | None) -> None:
    state = load()
    jobs = [j for j in state.get("jobs", []) if j.get("name") != name]
    jobs.append({"name": name, "region": region, "profile": profile})
    state["jobs"] = jobs[-MAX_JOBS:]
    save(state)


def record_upload(uri: str) -> None:
    state = load()
    state["last_data_uri"] = uri
    save(state)


def last_data_uri() -> str | None:
    return load().get("last_data_uri")


def resolve_job(name: str | None) -> dict[str, Any]:
    """The named job (with its region if recorded) or the latest submitted from here."""
    jobs = load().get("jobs", [])
    if name == LATEST_JOB:
        name = None
    if name:
        if not JOB_NAME.match(name):  # before any call: AWS would only say it found no such job
            raise RlvrError(
                f"{name}: not a SageMaker job name (1-63 letters, digits and hyphens, starting with a "
                "letter or digit); give a job's name, or none for the last job submitted from here",
                ExitCode.USAGE,
            )
        known = next((j for j in reversed(jobs) if j.get("name") == name), None)
        return known or {"name": name, "region": None, "profile": None}
    if not jobs:
        raise RlvrError("no job given and none submitted from here yet; pass a job name", ExitCode.USAGE)
    return jobs[-1]
