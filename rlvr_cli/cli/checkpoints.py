"""`rlvr eval`'s checkpoints on S3, handed to evaluation (`EvalRequest.remote`): evaluation never
calls a cloud service itself; the command line joins it to the SageMaker control plane here."""

from __future__ import annotations

from typing import Any

from rlvr_cli.evaluation.run import Checkpoint


class SageMakerCheckpoints:
    """A job's model and s3:// URIs: located first (one DescribeTrainingJob, so a wrong job name is
    the first error), fetched into the cache after the data is read."""

    def __init__(
        self, checkpoints: list[str], job: str | None, *, profile: str | None, region: str | None
    ) -> None:
        self.checkpoints, self.job, self.profile, self.region = checkpoints, job, profile, region
        self._job: tuple[str, str, dict[str, Any]] | None = None

    def locate(self) -> None:
        from rlvr_cli.cloud.sagemaker.artifacts import job_artifact

        if self.job is not None:
            self._job = job_artifact(self.job, profile=self.profile, region=self.region)

    def fetch(self) -> list[Checkpoint]:
        from rlvr_cli.cli.render import progress
        from rlvr_cli.cloud.sagemaker.artifacts import FetchedCheckpoint, resolve_remote

        with progress("download", unit="bytes") as report:
            found = resolve_remote(
                self.checkpoints, self._job, profile=self.profile, region=self.region, progress=report
            )
        out = []
        for item in found:
            if isinstance(item, FetchedCheckpoint):
                out.append(Checkpoint(str(item.path), item.label, item.as_dict()))
            else:
                out.append(Checkpoint(item))
        return out
