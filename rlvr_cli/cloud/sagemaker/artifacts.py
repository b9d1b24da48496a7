"""A SageMaker job's trained model, from S3 to a local checkpoint directory `rlvr eval` loads.

    rlvr eval --job --baseline                                  # the latest job submitted from here
    rlvr eval --checkpoint s3://bucket/rlvr/output/JOB/output/model.tar.gz

A job's model is the `model.tar.gz` SageMaker writes from `/opt/ml/model` (DescribeTrainingJob's
ModelArtifacts, else `S3OutputPath/JOB/output/model.tar.gz`, where SageMaker puts it). It is fetched
once into rlvr's cache and reused:

    $RLVR_CACHE_DIR/checkpoints/BUCKET-HASH/     (default ~/.cache/rlvr; HASH of the URI and ETag)
        model.tar.gz    the download, renamed into place only after it matched S3's size and checksums
        model/          the unpacked checkpoint, renamed into place only when complete
        source.json     where it came from and what was verified

A changed object has another ETag, hence another entry. The archive is unpacked only if every member
stays inside the target: an absolute path, a `..`, a link pointing outside, a path through a link,
or a device file refuses the whole archive before anything is written. It must hold an rlvr
checkpoint: `rlvr_run.json` (whose model names the base for --baseline) and an adapter or a model.

The control plane: no torch, no transformers; boto3 only for its S3 transfer manager.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.cloud.sagemaker import history
from rlvr_cli.cloud.sagemaker.client import aws_errors, client, parse_s3_uri
from rlvr_cli.cloud.sagemaker.s3objects import RemoteObject, head, verify_file
from rlvr_cli.core import console
from rlvr_cli.core.errors import RlvrError, UsageError, first_line
from rlvr_cli.core.files import cache_dir, write_json
from rlvr_cli.core.progress import Counter, Progress

RUN_FILE = "rlvr_run.json"  # rlvr_cli.models.record.RUN_FILE (the control plane imports no training code)
MODEL_FILES = ("adapter_config.json", "config.json")


@dataclass
class FetchedCheckpoint:
    path: Path  # the unpacked checkpoint directory
    s3_uri: str
    label: str  # what reports call it: the job name, or the URI
    job: str | None = None
    reused: bool = False  # found complete in the cache; nothing downloaded
    verified: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "s3_uri": self.s3_uri,
            "job": self.job,
            "path": str(self.path),
            "reused": self.reused,
            "verified": self.verified,
        }


def is_s3_uri(value: str | Path) -> bool:
    return str(value).startswith("s3://")


def cache_root() -> Path:
    return cache_dir() / "checkpoints"


# --- a job's model artifact ------------------------------------------------------------------------------


def job_artifact(job: str | None, *, profile: str | None, region: str | None) -> tuple[str, str, dict]:
    """(job name, model.tar.gz URI, AWS settings) of a completed job; a one-line error otherwise."""
    from rlvr_cli.cloud.sagemaker.jobs import describe_existing, exit_code

    known = history.resolve_job(job)  # the latest job for None or LATEST_JOB
    name = known["name"]
    settings = {"profile": profile or known.get("profile"), "region": region or known.get("region")}
    sm = client("sagemaker", **settings)
    with aws_errors(f"job {name}"):
        described = describe_existing(sm, name)
    status = described.get("TrainingJobStatus")
    uri = _artifact_uri(described)
    if status != "Completed":
        code = exit_code(status)
        hints = {
            "InProgress": f"wait for it to finish: rlvr logs {name}",
            "Stopping": f"wait for it to stop: rlvr status {name}",
            "Failed": f"see why: rlvr logs {name} --no-follow --tail 100",
            "Stopped": f"a stopped job's model may be partial; to evaluate it anyway: rlvr eval --checkpoint {uri}",
        }
        reason = (described.get("FailureReason") or "").strip().splitlines()
        because = f" ({reason[0][:200]})" if reason else ""
        raise RlvrError(
            f"job {name} is {status}{because}, not Completed (rlvr status exits {int(code)}); "
            + hints.get(status or "", f"rlvr status {name}"),
            code,
        )
    return name, uri, settings


def _artifact_uri(described: dict[str, Any]) -> str:
    uri = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if uri:
        return uri
    # Where SageMaker writes the model when DescribeTrainingJob does not say.
    output = described.get("OutputDataConfig", {}).get("S3OutputPath", "").rstrip("/")
    return f"{output}/{described['TrainingJobName']}/output/model.tar.gz"


# --- download --------------------------------------------------------------------------------------------


def fetch_checkpoint(
    uri: str,
    *,
    profile: str | None,
    region: str | None,
    job: str | None = None,
    progress: Progress | None = None,
) -> FetchedCheckpoint:
    """Download (or reuse) and unpack a model.tar.gz; returns the local checkpoint directory."""
    bucket, key = parse_s3_uri(uri)
    if not key or uri.endswith("/"):
        raise UsageError(f"--checkpoint {uri}: name the model archive, e.g. s3://{bucket}/.../model.tar.gz")
    uri = f"s3://{bucket}/{key}"
    s3 = client("s3", profile=profile, region=region)
    with aws_errors(uri):
        obj = head(s3, bucket, key)
        if obj is None:
            where = f"job {job} completed but its model" if job else "the object"
            raise RlvrError(
                f"{uri}: {where} is not on S3 (deleted, or another account or region); "
                "check with `aws s3 ls` and --region/--profile"
            )
        identity = hashlib.sha256(f"{uri}\n{obj.etag}\n{obj.size}".encode()).hexdigest()[:16]
        entry = cache_root() / f"{bucket}-{identity}"
        fetched = FetchedCheckpoint(path=entry / "model", s3_uri=uri, label=job or uri, job=job)
        if fetched.path.is_dir():  # renamed into place only when complete
            if _not_a_checkpoint({p.name for p in fetched.path.iterdir() if p.is_file()}, uri):
                raise RlvrError(
                    f"{uri}: the cached copy in {entry} is not a complete rlvr checkpoint (changed since "
                    "it was downloaded); delete that folder and run again to download it afresh"
                )
            fetched.reused = True
            console.info(f"using {uri} from the cache ({fetched.path})")
            return fetched
        archive = entry / "model.tar.gz"
        if archive.is_file() and archive.stat().st_size == obj.size:
            fetched.verified = ["size", "cached after a verified download"]
        else:
            fetched.verified = _download(s3, obj, archive, progress)
    unpack(archive, fetched.path, uri)
    write_json(entry / "source.json", {**fetched.as_dict(), "etag": obj.etag, "bytes": obj.size})
    return fetched


def _download(s3: Any, obj: RemoteObject, archive: Path, progress: Progress | None) -> list[str]:
    """Download to a temp file beside `archive`, compare it with S3's record, then rename it."""
    from boto3.exceptions import RetriesExceededError
    from boto3.s3.transfer import S3Transfer, TransferConfig

    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".download", dir=archive.parent)
    os.close(fd)
    tmp = Path(name)
    extra = {"VersionId": obj.version_id} if obj.version_id else {}
    try:
        received = Counter(progress, obj.size)
        received.describe(obj.key)
        try:
            S3Transfer(s3, TransferConfig()).download_file(
                obj.bucket, obj.key, str(tmp), extra_args=extra, callback=received.advance
            )
        except RetriesExceededError as exc:
            raise RlvrError(
                f"{obj.uri}: the download kept failing ({exc.last_exception}); check the network and run again"
            ) from exc
        verification = verify_file(s3, obj, tmp)
        if not verification.matches:
            raise RlvrError(
                f"{obj.uri}: the download does not match the object on S3 ({verification.mismatch}); "
                "it may have changed meanwhile: run again"
            )
        if not verification.content_checked:
            console.notice(
                f"{obj.uri}: S3 keeps no checksum rlvr can compute for it; only its size was checked"
            )
        os.replace(tmp, archive)
        return verification.checked
    finally:
        tmp.unlink(missing_ok=True)


# --- unpack ----------------------------------------------------------------------------------------------


def _member_problem(member: tarfile.TarInfo, links: set[str]) -> str | None:
    """Why extracting this member could write outside the target, or None when it cannot."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return "has '..' in its path"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            return f"lies under the link {'/'.join(parts[:i])!r}"
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/"):
            return f"links to the absolute path {member.linkname!r}"
        base = posixpath.dirname("/".join(parts)) if member.issym() else ""  # hard links: from the root
        target = posixpath.normpath(posixpath.join(base, link))
        if target == ".." or target.startswith("../"):
            return f"links outside the archive ({member.linkname!r})"
    elif not (member.isfile() or member.isdir()):
        return "is a device file or FIFO"
    return None


def _top_level(members: list[tarfile.TarInfo]) -> set[str]:
    names = set()
    for member in members:
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if len(parts) == 1 and not member.isdir():
            names.add(parts[0])
    return names


def _not_a_checkpoint(names: set[str], uri: str) -> RlvrError | None:
    missing = []
    if RUN_FILE not in names:
        missing.append(RUN_FILE)
    if not any(f in names for f in MODEL_FILES):
        missing.append(" or ".join(MODEL_FILES))
    if not missing:
        return None
    return RlvrError(
        f"{uri}: not an rlvr checkpoint (no {' and no '.join(missing)} at the top of the archive); "
        "evaluate the model of a job run by `rlvr train --remote`"
    )


def unpack(archive: Path, target: Path, uri: str) -> None:
    """Extract a checked archive into a temp dir beside `target`, then rename it to `target`."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            links = {
                "/".join(p for p in m.name.split("/") if p not in ("", ".")) for m in members if m.issym()
            }
            for member in members:
                problem = _member_problem(member, links)
                if problem:
                    raise RlvrError(
                        f"{uri}: unsafe archive, refused: member {member.name!r} {problem}; nothing was extracted"
                    )
            error = _not_a_checkpoint(_top_level(members), uri)
            if error:
                raise error
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.12 and recent 3.10/3.11: a second guard
                    tar.extractall(tmp, members=members, filter="data")
                else:
                    tar.extractall(tmp, members=members)
                try:
                    os.replace(tmp, target)
                except OSError:
                    if not target.is_dir():  # not another process that finished first
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except tarfile.TarError as exc:
        raise RlvrError(
            f"{uri}: not a readable tar.gz archive ({first_line(exc)}); "
            "evaluate the model.tar.gz of a job run by `rlvr train --remote`"
        ) from exc


def resolve_remote(
    checkpoints: list[str],
    job: tuple[str, str, dict[str, Any]] | None,
    *,
    profile: str | None,
    region: str | None,
    progress: Progress | None = None,
) -> list[FetchedCheckpoint | str]:
    """The checkpoints to evaluate, S3 ones fetched: a local path stays as it is. `job` is what
    `job_artifact` found (looked up first, so that a wrong job name fails before anything else)."""
    resolved: list[FetchedCheckpoint | str] = []
    if job is not None:
        name, uri, settings = job
        console.info(f"job {name}: model at {uri}")
        resolved.append(fetch_checkpoint(uri, job=name, progress=progress, **settings))
    for checkpoint in checkpoints:
        if is_s3_uri(checkpoint):
            resolved.append(fetch_checkpoint(checkpoint, profile=profile, region=region, progress=progress))
        else:
            resolved.append(checkpoint)
    return resolved
