"""From a finished SageMaker job to its evaluation: `rlvr eval --job` and `--checkpoint s3://...`.

The job and its model.tar.gz live in the local moto server. Most tests stop once the archive is
downloaded, checked and unpacked; one evaluates the fetched checkpoint with the tiny model.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from rlvr_cli.cloud.sagemaker import history
from rlvr_cli.cloud.sagemaker.s3objects import Verification

from .test_remote import IMAGE, REGION, ROLE, boto, limited_credentials

BUCKET = "rlvr-test"
OUTPUT = f"s3://{BUCKET}/rlvr/output"
RUN = {"status": "completed", "model": {"name": "Qwen/Qwen2.5-0.5B", "kind": "hub"}, "mlflow": {}}
ADAPTER = {"base_model_name_or_path": "Qwen/Qwen2.5-0.5B", "peft_type": "LORA", "r": 16}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLVR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


@pytest.fixture
def s3(aws: str, job_states):
    """The bucket; and the job states the test gives `submit_job` become what SageMaker answers."""
    STATES.append(job_states)
    client = boto("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    STATES.remove(job_states)


STATES: list = []  # the current test's JobStates (tests/conftest.py)


def tar_gz(files: dict[str, bytes], extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> bytes:
    """A model.tar.gz as SageMaker writes it: the contents of /opt/ml/model at the top."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def checkpoint_files(weights: bytes = b"\0" * 64) -> dict[str, bytes]:
    return {
        "adapter_config.json": json.dumps(ADAPTER).encode(),
        "adapter_model.safetensors": weights,
        "rlvr_run.json": json.dumps(RUN).encode(),
    }


def submit_job(name: str, status: str = "Completed", failure: str | None = None) -> str:
    """A training job in moto, recorded as submitted from here; returns its model.tar.gz key."""
    boto("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": OUTPUT},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    STATES[-1].set(name, status, **({"FailureReason": failure} if failure else {}))
    history.record_job(name, REGION, None)
    return f"rlvr/output/{name}/output/model.tar.gz"


def fetch(job: str | None = history.LATEST_JOB, checkpoints: list[str] = ()):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact, resolve_remote

    found = job_artifact(job, profile=None, region=None) if job is not None else None
    return resolve_remote(list(checkpoints), found, profile=None, region=None)


def outside_files(root: Path, cache: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and cache not in p.parents]


# --- fetching a job's model --------------------------------------------------------------------------


def test_the_latest_jobs_model_is_downloaded_verified_and_unpacked_once(s3, cache: Path):
    key = submit_job("rlvr-done")
    archive = tar_gz(checkpoint_files())
    s3.put_object(Bucket=BUCKET, Key=key, Body=archive, ChecksumAlgorithm="SHA256")
    # The model artifact SageMaker reports is where the job's model.tar.gz lies.
    described = boto("sagemaker").describe_training_job(TrainingJobName="rlvr-done")
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/{key}"

    [fetched] = fetch()
    assert fetched.job == "rlvr-done" and fetched.label == "rlvr-done" and not fetched.reused
    assert fetched.s3_uri == f"s3://{BUCKET}/{key}"
    assert fetched.verified == ["size", "ChecksumSHA256", "ETag (MD5)"]
    assert cache in fetched.path.parents
    assert json.loads((fetched.path / "rlvr_run.json").read_bytes()) == RUN
    assert (fetched.path / "adapter_model.safetensors").read_bytes() == b"\0" * 64
    entry = fetched.path.parent
    assert (entry / "model.tar.gz").read_bytes() == archive
    # Where the checkpoint came from, as eval's summary.json records it.
    assert fetched.as_dict() == {
        "s3_uri": f"s3://{BUCKET}/{key}",
        "job": "rlvr-done",
        "path": str(fetched.path),
        "reused": False,
        "verified": ["size", "ChecksumSHA256", "ETag (MD5)"],
    }
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')  # rlvr keeps it without quotes
    source = {**fetched.as_dict(), "etag": etag, "bytes": len(archive)}
    assert json.loads((entry / "source.json").read_text()) == source
    assert sorted(p.name for p in entry.iterdir()) == ["model", "model.tar.gz", "source.json"]  # no temp left

    # A second run finds the complete checkpoint in the cache: nothing downloaded or unpacked.
    stamp = (entry / "model.tar.gz").stat().st_mtime_ns, (entry / "model").stat().st_ino
    [again] = fetch("rlvr-done")
    assert again.reused and again.path == fetched.path
    assert ((entry / "model.tar.gz").stat().st_mtime_ns, (entry / "model").stat().st_ino) == stamp

    # A complete download whose unpacking was lost is unpacked again, not downloaded again.
    import shutil

    shutil.rmtree(entry / "model")
    [third] = fetch("rlvr-done")
    assert not third.reused and (third.path / "rlvr_run.json").is_file()
    assert (entry / "model.tar.gz").stat().st_mtime_ns == stamp[0]


def test_a_cached_checkpoint_that_lost_its_manifest_is_refused(s3, cache: Path, aws_calls):
    """The cache is reused only if it still holds an rlvr checkpoint, and nothing is downloaded again."""
    from rlvr_cli.core.errors import RlvrError

    key = submit_job("rlvr-damaged")
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files()))
    [fetched] = fetch()
    (fetched.path / "rlvr_run.json").unlink()
    sent = len(aws_calls.sent)
    with pytest.raises(RlvrError) as caught:
        fetch("rlvr-damaged")
    assert caught.value.message == (
        f"s3://{BUCKET}/{key}: the cached copy in {fetched.path.parent} is not a complete rlvr checkpoint "
        "(changed since it was downloaded); delete that folder and run again to download it afresh"
    )
    assert "GetObject" not in [name for name, _ in aws_calls.sent[sent:]]


def test_a_multipart_artifact_is_checked_part_by_part(s3, cache: Path, tmp_path: Path):
    from boto3.s3.transfer import S3Transfer, TransferConfig

    key = submit_job("rlvr-big")
    weights = os.urandom(18 * 1024 * 1024)  # incompressible: the archive is three 8 MiB parts
    local = tmp_path / "model.tar.gz"
    local.write_bytes(tar_gz(checkpoint_files(weights)))
    S3Transfer(s3, TransferConfig(multipart_threshold=8 * 1024 * 1024)).upload_file(
        str(local), BUCKET, key, extra_args={"ChecksumAlgorithm": "SHA256"}
    )
    [fetched] = fetch()
    assert fetched.verified == ["size", "ChecksumSHA256 (composite of 3 parts)", "ETag (MD5 of 3 parts)"]
    assert (fetched.path / "adapter_model.safetensors").read_bytes() == weights


MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part (but the last)


def multipart_upload(s3, key: str, data: bytes, sizes: list[int]) -> None:
    """`data` uploaded in parts of the given sizes, with SHA-256 checksums, as any S3 client may cut them."""
    assert sum(sizes) == len(data)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256")
    parts, start = [], 0
    for number, size in enumerate(sizes, 1):
        sent = s3.upload_part(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + size],
            ChecksumAlgorithm="SHA256",
        )
        parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": sent["ChecksumSHA256"]})
        start += size
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


@pytest.mark.parametrize(
    ("sizes", "asked"),
    [
        ([PART, PART, PART], [1]),  # equal parts: part 1's size gives them all
        ([PART, PART, 1], [1]),  # equal parts and a short last one
        ([PART, PART + 1, 1], [1, 1, 2, 3]),  # the equal-parts guess is wrong: every part is asked for
        (
            [PART, PART, PART + 1],
            [1, 1, 2, 3],
        ),  # no equal-parts layout fits the size: every part is asked for
    ],
    ids=["equal", "short-last", "guess-wrong", "no-guess"],
)
def test_a_multipart_download_is_checked_against_its_own_part_boundaries(
    s3, aws_calls, tmp_path: Path, sizes: list[int], asked: list[int]
):
    """S3's composite checksums are over the parts as uploaded: rlvr finds the boundaries with as few
    HeadObject calls as the layout allows, and the file matches whatever the layout."""
    import base64
    import hashlib

    from rlvr_cli.cloud.sagemaker.s3objects import head, verify_file

    data = os.urandom(sum(sizes))
    multipart_upload(s3, "blob", data, sizes)
    local = tmp_path / "blob"
    local.write_bytes(data)
    # What S3 keeps: SHA-256 and MD5 of the concatenated digests of the parts.
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    chunks = [data[a : a + n] for a, n in zip(starts, sizes, strict=True)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in chunks)).digest()
    md5s = hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest()
    recorded = s3.head_object(Bucket=BUCKET, Key="blob", ChecksumMode="ENABLED")
    assert recorded["ChecksumSHA256"].split("-")[0] == base64.b64encode(composite).decode()
    assert recorded["ETag"] == f'"{md5s}-3"'

    obj = head(s3, BUCKET, "blob")
    before = len(aws_calls.params("HeadObject"))
    verification = verify_file(s3, obj, local)
    assert verification.matches and verification.mismatch is None
    assert verification.checked == ["size", "ChecksumSHA256 (composite of 3 parts)", "ETag (MD5 of 3 parts)"]
    assert aws_calls.params("HeadObject")[before:] == [
        {"Bucket": BUCKET, "Key": "blob", "PartNumber": n} for n in asked
    ]

    # One changed byte in the last part: both checksums differ, and the first is named.
    changed = bytearray(data)
    changed[-1] ^= 1
    local.write_bytes(bytes(changed))
    assert verify_file(s3, obj, local) == Verification(
        False,
        ["size", "ChecksumSHA256 (composite of 3 parts)", "ChecksumSHA256", "ETag (MD5 of 3 parts)"],
        "ChecksumSHA256 (composite of 3 parts) / ChecksumSHA256 differs",
    )


def test_the_version_first_seen_is_downloaded_and_checked_when_the_object_is_replaced(
    s3, cache: Path, aws_calls, monkeypatch: pytest.MonkeyPatch
):
    """In a versioned bucket, an object replaced after rlvr's HeadObject: the part sizes and the
    download are those of the version rlvr saw, so the model is the one verified."""
    import rlvr_cli.cloud.sagemaker.artifacts

    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = submit_job("rlvr-versioned")
    weights = os.urandom(12 * MiB)
    archive = tar_gz(checkpoint_files(weights))
    # Unequal parts: the part sizes are asked for twice, the guess from part 1, then every part.
    multipart_upload(s3, key, archive, [PART, PART + 1, len(archive) - 2 * PART - 1])
    first = s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    real_head = rlvr_cli.cloud.sagemaker.artifacts.head

    def head_then_replaced(client, bucket, name):
        record = real_head(client, bucket, name)
        # Another job's model, in one part, becomes the latest version.
        s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files(b"new" * 64)))
        return record

    monkeypatch.setattr(rlvr_cli.cloud.sagemaker.artifacts, "head", head_then_replaced)
    sent = len(aws_calls.sent)
    [fetched] = fetch()
    assert (fetched.path / "adapter_model.safetensors").read_bytes() == weights
    assert fetched.verified == ["size", "ChecksumSHA256 (composite of 3 parts)", "ETag (MD5 of 3 parts)"]
    calls = aws_calls.sent[sent:]
    assert [params for name, params in calls if name == "HeadObject"] == [
        {"Bucket": BUCKET, "Key": key, "ChecksumMode": "ENABLED"},
        {"Bucket": BUCKET, "Key": key, "VersionId": first},  # the transfer manager's, for the size
        *({"Bucket": BUCKET, "Key": key, "PartNumber": n, "VersionId": first} for n in (1, 1, 2, 3)),
    ]
    gets = [params for name, params in calls if name == "GetObject"]
    assert gets and all(p["VersionId"] == first for p in gets)


def test_an_object_that_changes_during_the_download_is_not_cached(
    s3, cache: Path, monkeypatch: pytest.MonkeyPatch
):
    import rlvr_cli.cloud.sagemaker.artifacts

    key = submit_job("rlvr-race")
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files(b"a" * 64)))
    real_head = rlvr_cli.cloud.sagemaker.artifacts.head

    def head_then_overwritten(client, bucket, name):
        record = real_head(client, bucket, name)
        # Another writer replaces the object (same size) between rlvr's HeadObject and its download.
        s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files(b"b" * 64)))
        return record

    monkeypatch.setattr(rlvr_cli.cloud.sagemaker.artifacts, "head", head_then_overwritten)
    from rlvr_cli.core.errors import RlvrError

    with pytest.raises(
        RlvrError, match=r"the download does not match the object on S3 .*; it may have changed"
    ):
        fetch()
    assert not any(p.is_file() for p in cache.rglob("*"))  # no archive, no temp file, no model


# --- errors, one line each ---------------------------------------------------------------------------


def one_error_line(result, code: int) -> str:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    return errors[0]


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("InProgress", 3, "job rlvr-x is InProgress, not Completed (rlvr status exits 3); wait for it"),
        (
            "Failed",
            4,
            "job rlvr-x is Failed (AlgorithmError: CUDA out of memory), not Completed (rlvr status exits 4); "
            "see why: rlvr logs rlvr-x --no-follow --tail 100",
        ),
        ("Stopped", 5, "job rlvr-x is Stopped, not Completed (rlvr status exits 5)"),
    ],
)
def test_eval_of_a_job_that_did_not_complete(cli, s3, cache, prepared: Path, status, code, expected):
    submit_job("rlvr-x", status, "AlgorithmError: CUDA out of memory" if status == "Failed" else None)
    line = one_error_line(cli("eval", "--job", "--data", prepared), code)
    assert expected in line
    assert not cache.exists()


def test_eval_of_an_unknown_job(cli, s3, prepared: Path):
    line = one_error_line(cli("eval", "--data", prepared, "--job", "rlvr-nope"), 6)
    assert "job rlvr-nope: no such training job in us-east-1" in line


def test_a_wrong_job_name_is_reported_before_the_missing_local_data(cli, s3, tmp_path: Path):
    assert not (tmp_path / "data").exists()  # the default --data
    line = one_error_line(cli("eval", "--job", "rlvr-typo"), 6)
    assert "job rlvr-typo: no such training job" in line


def test_a_mistyped_data_directory_is_named_as_such(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    line = one_error_line(cli("eval", "--model", "smollm2-135m", "--data", "runs/dta"), 2)
    assert line == (
        "error: --data runs/dta: no such directory, and no Hub dataset of that name could be loaded; "
        "pass a directory that `rlvr prepare` wrote (it holds test/dataset.json)"
    )


def test_eval_of_a_job_whose_model_is_missing(cli, s3, cache, prepared: Path):
    key = submit_job("rlvr-empty")
    line = one_error_line(cli("eval", "--data", prepared, "--job"), 1)
    assert f"s3://{BUCKET}/{key}: job rlvr-empty completed but its model is not on S3" in line


def test_eval_without_access_to_the_model(
    cli, s3, cache, prepared: Path, aws: str, monkeypatch: pytest.MonkeyPatch
):
    key = submit_job("rlvr-private")
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files()))
    statements = [
        {"Effect": "Allow", "Action": "sagemaker:DescribeTrainingJob", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
    ]  # no s3:GetObject
    with limited_credentials(aws, monkeypatch, statements):
        result = cli("eval", "--job", "rlvr-private", "--data", prepared)
    line = one_error_line(result, 1)
    assert f"s3://{BUCKET}/{key}: access denied" in line
    assert not cache.exists()


def test_eval_of_an_archive_that_is_not_an_rlvr_checkpoint(cli, s3, cache: Path, prepared: Path):
    key = "elsewhere/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz({"config.json": b"{}", "model.safetensors": b"x"}))
    line = one_error_line(cli("eval", "--checkpoint", f"s3://{BUCKET}/{key}", "--data", prepared), 1)
    assert "not an rlvr checkpoint (no rlvr_run.json at the top of the archive)" in line
    assert not list(cache.glob("*/model"))

    s3.put_object(Bucket=BUCKET, Key="junk/model.tar.gz", Body=b"not a tar file at all")
    line = one_error_line(
        cli("eval", "--checkpoint", f"s3://{BUCKET}/junk/model.tar.gz", "--data", prepared), 1
    )
    assert "not a readable tar.gz archive" in line


def test_eval_checkpoint_needs_an_object_not_a_prefix(cli, s3, prepared: Path):
    line = one_error_line(cli("eval", "--checkpoint", f"s3://{BUCKET}/rlvr/output/", "--data", prepared), 2)
    assert "name the model archive" in line


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    data = b"owned\n" if kind == tarfile.REGTYPE else None
    info.size = len(data) if data else 0
    return info, data


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([_member("/tmp/rlvr-evil-absolute")], "has an absolute path"),
        ([_member("../../rlvr-evil-dotdot")], "has '..' in its path"),
        ([_member("evil", tarfile.SYMTYPE, "/etc/passwd")], "links to the absolute path '/etc/passwd'"),
        ([_member("evil", tarfile.SYMTYPE, "../../outside")], "links outside the archive"),
        ([_member("evil", tarfile.LNKTYPE, "../outside")], "links outside the archive"),
        (  # a link that stays inside, then a file written through it: where it lands depends on the link
            [_member("sub", tarfile.SYMTYPE, "."), _member("sub/rlvr_run.json")],
            "lies under the link 'sub'",
        ),
        ([_member("fifo", tarfile.FIFOTYPE)], "is a device file or FIFO"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    cli, s3, cache: Path, prepared: Path, tmp_path: Path, members, problem
):
    s3.put_object(Bucket=BUCKET, Key="bad/model.tar.gz", Body=tar_gz(checkpoint_files(), members))
    before = outside_files(tmp_path, cache)
    line = one_error_line(
        cli("eval", "--checkpoint", f"s3://{BUCKET}/bad/model.tar.gz", "--data", prepared), 1
    )
    assert "unsafe archive, refused: member" in line and problem in line and "nothing was extracted" in line
    assert outside_files(tmp_path, cache) == before
    assert not Path("/tmp/rlvr-evil-absolute").exists()
    [entry] = cache.iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["model.tar.gz"]  # verified download, nothing unpacked


def test_a_link_inside_the_archive_is_kept(s3, cache: Path):
    members = [_member("tokenizer.json"), _member("tokenizer-link.json", tarfile.SYMTYPE, "tokenizer.json")]
    s3.put_object(Bucket=BUCKET, Key="ok/model.tar.gz", Body=tar_gz(checkpoint_files(), members))
    [fetched] = fetch(None, [f"s3://{BUCKET}/ok/model.tar.gz"])
    assert fetched.label == f"s3://{BUCKET}/ok/model.tar.gz" and fetched.job is None
    assert (fetched.path / "tokenizer-link.json").read_text() == "owned\n"


# --- the whole flow ---------------------------------------------------------------------------------------


def test_eval_job_evaluates_the_fetched_checkpoint_against_its_base(
    cli, s3, prepared: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`rlvr eval --job --baseline`: the tiny model stands in for the trained one; its manifest
    names the base, evaluated on the same problems."""
    monkeypatch.setenv("RLVR_CACHE_DIR", str(tmp_path / "cache"))
    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()}
    files["rlvr_run.json"] = json.dumps(
        {**RUN, "model": {"name": str(tiny_model_dir), "kind": "local"}}
    ).encode()
    key = submit_job("rlvr-tiny")
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(files))
    result = cli(
        "eval", "--job", "--baseline", "--data", prepared, "--limit", "2", "--max-new-tokens", "4",
        "--no-track", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = result.json()
    assert [r["label"] for r in summary["results"]] == ["rlvr-tiny", f"base: {tiny_model_dir}"]
    assert summary["results"][0]["checkpoint"]["s3_uri"] == f"s3://{BUCKET}/{key}"
    assert summary["results"][0]["checkpoint"]["job"] == "rlvr-tiny"
    assert summary["comparison"]["n"] == 2
    assert "job rlvr-tiny: model at" in result.err


def test_the_fetching_modules_import_no_ml_library():
    import subprocess
    import sys

    code = (
        "import sys\nimport rlvr_cli.cloud.sagemaker.artifacts, rlvr_cli.cloud.sagemaker.s3objects, rlvr_cli.cloud.sagemaker.upload, rlvr_cli.cloud.sagemaker.commands\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'mlflow', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_jobs_mlflow_store_inside_its_container_is_not_reused():
    from rlvr_cli.evaluation.run import _mlflow_inside_container
    from rlvr_cli.models.record import RunRecord

    inside = {"tracking_uri": "sqlite:////opt/ml/output/data/mlruns/mlflow.db", "run_id": "abc"}
    server = {
        "tracking_uri": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rlvr",
        "run_id": "abc",
    }
    assert _mlflow_inside_container(RunRecord.from_dict({**RUN, "mlflow": inside}))
    assert not _mlflow_inside_container(
        RunRecord.from_dict({**RUN, "mlflow": server})
    )  # eval joins the job's run
    assert not _mlflow_inside_container(RunRecord.from_dict({**RUN, "mlflow": {"run_id": None}}))


def test_the_model_is_where_describe_says_or_where_sagemaker_writes_it():
    from rlvr_cli.cloud.sagemaker.artifacts import _artifact_uri

    described = {"TrainingJobName": "rlvr-1", "OutputDataConfig": {"S3OutputPath": "s3://b/out/"}}
    assert _artifact_uri(described) == "s3://b/out/rlvr-1/output/model.tar.gz"
    assert _artifact_uri({**described, "ModelArtifacts": {}}) == "s3://b/out/rlvr-1/output/model.tar.gz"
    moved = {**described, "ModelArtifacts": {"S3ModelArtifacts": "s3://elsewhere/model.tar.gz"}}
    assert _artifact_uri(moved) == "s3://elsewhere/model.tar.gz"


def test_a_checkpoint_needs_its_run_record_and_a_model_at_the_top_of_the_archive():
    from rlvr_cli.cloud.sagemaker.artifacts import _not_a_checkpoint, _top_level

    def member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        return info

    members = [member("./rlvr_run.json"), member("config.json"), member("sub/adapter_config.json")]
    members += [member("./tokenizer", tarfile.DIRTYPE), member("a b.txt")]
    assert _top_level(members) == {"rlvr_run.json", "config.json", "a b.txt"}
    assert _not_a_checkpoint({"rlvr_run.json", "adapter_config.json"}, "s3://b/m.tar.gz") is None
    assert _not_a_checkpoint({"rlvr_run.json", "config.json"}, "s3://b/m.tar.gz") is None
    assert str(_not_a_checkpoint({"config.json"}, "s3://b/m.tar.gz")) == (
        "s3://b/m.tar.gz: not an rlvr checkpoint (no rlvr_run.json at the top of the archive); "
        "evaluate the model of a job run by `rlvr train --remote`"
    )
    assert "(no rlvr_run.json and no adapter_config.json or config.json at the top" in str(
        _not_a_checkpoint({"README.md"}, "s3://b/m.tar.gz")
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("\\etc\\passwd", "has an absolute path"),  # a Windows-rooted path
        ("C:evil.txt", "has an absolute path"),  # a drive letter
        ("c:", "has an absolute path"),
        ("a\\..\\..\\evil", "has '..' in its path"),  # backslashes are separators too
        ("sub\\inner.txt", "lies under the link 'sub'"),
        ("ab:c/d.txt", None),  # a colon past the drive letter's place is part of a name
        ("x", None),
    ],
)
def test_windows_style_member_names_are_judged_like_posix_ones(name, problem):
    from rlvr_cli.cloud.sagemaker.artifacts import _member_problem

    assert _member_problem(tarfile.TarInfo(name), links={"sub"}) == problem


# --- fetching, piece by piece -----------------------------------------------------------------------------


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, str | None]]:
    """The (service, profile, region) of each AWS client the fetching code asks for. The client it
    gets is the test's moto one: the profiles named here are not this machine's."""
    import rlvr_cli.cloud.sagemaker.artifacts as artifacts

    asked: list[tuple[str, str | None, str | None]] = []
    real = artifacts.client

    def recording(service: str, *, profile: str | None = None, region: str | None = None):
        asked.append((service, profile, region))
        return real(service)

    monkeypatch.setattr(artifacts, "client", recording)
    return asked


def spoken(captured: str) -> str:
    """stderr's messages with the console's line wrapping (at 80 columns, inside words too) undone."""
    return captured.replace("\n", "")


def test_a_jobs_model_is_fetched_with_the_region_and_profile_it_was_submitted_with(s3, cache: Path, clients):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact, resolve_remote

    key = submit_job("rlvr-far")
    history.record_job("rlvr-far", "eu-west-1", "team")
    s3.put_object(Bucket=BUCKET, Key=key, Body=tar_gz(checkpoint_files()))
    found = job_artifact(None, profile=None, region=None)
    assert found == ("rlvr-far", f"s3://{BUCKET}/{key}", {"profile": "team", "region": "eu-west-1"})
    # What is given on the command line wins over what was recorded.
    assert job_artifact("rlvr-far", profile="other", region="us-west-2")[2] == {
        "profile": "other",
        "region": "us-west-2",
    }
    assert clients == [("sagemaker", "team", "eu-west-1"), ("sagemaker", "other", "us-west-2")]

    clients.clear()
    resolved = resolve_remote(
        ["runs/local", f"s3://{BUCKET}/{key}"], found, profile="mine", region="ap-south-1"
    )
    assert [r if isinstance(r, str) else r.label for r in resolved] == [
        "rlvr-far",
        "runs/local",
        f"s3://{BUCKET}/{key}",
    ]
    assert clients == [("s3", "team", "eu-west-1"), ("s3", "mine", "ap-south-1")]


def test_each_download_reports_its_bytes_to_the_progress_display(s3, cache: Path, capsys):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact, resolve_remote

    key = submit_job("rlvr-bytes")
    archives = {
        key: tar_gz(checkpoint_files(b"a" * 5000)),
        "other/model.tar.gz": tar_gz(checkpoint_files(b"b" * 9)),
    }
    for name, body in archives.items():
        s3.put_object(Bucket=BUCKET, Key=name, Body=body)
    seen: list[tuple[str, float, float | None]] = []
    resolve_remote(
        [f"s3://{BUCKET}/other/model.tar.gz"],
        job_artifact(None, profile=None, region=None),
        profile=None,
        region=None,
        progress=lambda description, done, total: seen.append((description, done, total)),
    )
    for name, body in archives.items():
        mine = [(done, total) for description, done, total in seen if description == name]
        assert mine[0] == (0, len(body)) and mine[-1] == (len(body), len(body)), (name, mine)
    assert f"job rlvr-bytes: model at s3://{BUCKET}/{key}" in spoken(capsys.readouterr().err)


def test_a_replaced_object_is_fetched_afresh_and_a_kept_download_is_not_fetched_again(
    s3, cache: Path, capsys
):
    import shutil

    from rlvr_cli.cloud.sagemaker.artifacts import fetch_checkpoint

    uri = f"s3://{BUCKET}/kept/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key="kept/model.tar.gz", Body=tar_gz(checkpoint_files(b"a" * 64)))
    first = fetch_checkpoint(uri, profile=None, region=None)
    capsys.readouterr()
    again = fetch_checkpoint(uri, profile=None, region=None)
    assert again.reused and again.path == first.path
    assert f"using {uri} from the cache ({first.path})" in spoken(capsys.readouterr().err)

    shutil.rmtree(first.path)  # the unpacked copy lost, the verified download kept
    third = fetch_checkpoint(uri, profile=None, region=None)
    assert not third.reused and third.verified == ["size", "cached after a verified download"]

    # Same key, same size, other bytes: another ETag, another cache entry, the new weights.
    s3.put_object(Bucket=BUCKET, Key="kept/model.tar.gz", Body=tar_gz(checkpoint_files(b"b" * 64)))
    fourth = fetch_checkpoint(uri, profile=None, region=None)
    assert not fourth.reused and fourth.path != first.path
    assert (fourth.path / "adapter_model.safetensors").read_bytes() == b"b" * 64


def test_fetch_errors_name_the_object_and_what_to_do(s3, cache: Path):
    from rlvr_cli.cloud.sagemaker.artifacts import fetch_checkpoint
    from rlvr_cli.core.errors import RlvrError

    def error(key: str, body: bytes | None = None) -> str:
        if body is not None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        with pytest.raises(RlvrError) as caught:
            fetch_checkpoint(f"s3://{BUCKET}/{key}", profile=None, region=None)
        return caught.value.message

    assert error("gone/model.tar.gz") == (
        f"s3://{BUCKET}/gone/model.tar.gz: the object is not on S3 (deleted, or another account or region); "
        "check with `aws s3 ls` and --region/--profile"
    )
    assert error("junk/model.tar.gz", b"not a tar file at all") == (
        f"s3://{BUCKET}/junk/model.tar.gz: not a readable tar.gz archive (not a gzip file); "
        "evaluate the model.tar.gz of a job run by `rlvr train --remote`"
    )
    assert error("plain/model.tar.gz", tar_gz({"config.json": b"{}"})) == (
        f"s3://{BUCKET}/plain/model.tar.gz: not an rlvr checkpoint (no rlvr_run.json at the top of the "
        "archive); evaluate the model of a job run by `rlvr train --remote`"
    )


def test_a_download_that_keeps_failing_says_so_and_the_next_try_completes(
    s3, cache: Path, monkeypatch: pytest.MonkeyPatch
):
    from boto3.exceptions import RetriesExceededError
    from boto3.s3.transfer import S3Transfer

    from rlvr_cli.cloud.sagemaker.artifacts import fetch_checkpoint
    from rlvr_cli.core.errors import RlvrError

    uri = f"s3://{BUCKET}/flaky/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key="flaky/model.tar.gz", Body=tar_gz(checkpoint_files()))
    real = S3Transfer.download_file

    def failing(self, *args, **kwargs):
        raise RetriesExceededError(ConnectionError("connection reset by peer"))

    monkeypatch.setattr(S3Transfer, "download_file", failing)
    with pytest.raises(RlvrError) as caught:
        fetch_checkpoint(uri, profile=None, region=None)
    assert caught.value.message == (
        f"{uri}: the download kept failing (connection reset by peer); check the network and run again"
    )
    assert not any(p.is_file() for p in cache.rglob("*"))

    monkeypatch.setattr(S3Transfer, "download_file", real)  # the network is back; the entry's folder stays
    assert (fetch_checkpoint(uri, profile=None, region=None).path / "rlvr_run.json").is_file()


def test_a_download_checked_by_its_size_alone_says_so(
    s3, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    import rlvr_cli.cloud.sagemaker.artifacts as artifacts

    notice = "S3 keeps no checksum rlvr can compute for it; only its size was checked"
    s3.put_object(Bucket=BUCKET, Key="summed/model.tar.gz", Body=tar_gz(checkpoint_files()))
    artifacts.fetch_checkpoint(f"s3://{BUCKET}/summed/model.tar.gz", profile=None, region=None)
    assert notice not in spoken(capsys.readouterr().err)

    # An object whose ETag is no MD5 and that has no checksum (SSE-KMS, say): the size is all there is.
    monkeypatch.setattr(artifacts, "verify_file", lambda s3, obj, path: Verification(True, ["size"]))
    s3.put_object(Bucket=BUCKET, Key="bare/model.tar.gz", Body=tar_gz(checkpoint_files()))
    fetched = artifacts.fetch_checkpoint(f"s3://{BUCKET}/bare/model.tar.gz", profile=None, region=None)
    assert fetched.verified == ["size"]
    assert f"s3://{BUCKET}/bare/model.tar.gz: {notice}" in spoken(capsys.readouterr().err)


def test_a_link_named_with_dots_and_double_slashes_still_guards_what_lies_under_it(tmp_path: Path):
    from rlvr_cli.cloud.sagemaker.artifacts import unpack
    from rlvr_cli.core.errors import RlvrError

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(
        tar_gz(
            checkpoint_files(),
            [_member("./dir//sub", tarfile.SYMTYPE, ".."), _member("dir/sub/rlvr_run.json")],
        )
    )
    with pytest.raises(RlvrError, match=r"member 'dir/sub/rlvr_run\.json' lies under the link 'dir/sub'"):
        unpack(archive, tmp_path / "model", "s3://b/model.tar.gz")
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_another_process_unpacked_first_is_kept(tmp_path: Path):
    """Two evals fetching the same model: the second to finish keeps the first's copy, and leaves
    no temporary folder beside it."""
    from rlvr_cli.cloud.sagemaker.artifacts import unpack

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_gz(checkpoint_files()))
    target = tmp_path / "entry" / "model"
    target.mkdir(parents=True)
    (target / "rlvr_run.json").write_text("the first process's")
    unpack(archive, target, "s3://b/model.tar.gz")
    assert (target / "rlvr_run.json").read_text() == "the first process's"
    assert [p.name for p in target.parent.iterdir()] == ["model"]


# --- a job's state, the archive's members, and the download, without a server --------------------------


@pytest.fixture
def described(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What DescribeTrainingJob answers for the job `job_artifact` looks up (edit it in the test)."""
    import rlvr_cli.cloud.sagemaker.artifacts as artifacts
    import rlvr_cli.cloud.sagemaker.jobs as jobs

    answer = {"TrainingJobName": "rlvr-x", "OutputDataConfig": {"S3OutputPath": "s3://b/out"}}

    def describe_existing(sm, name: str) -> dict:
        assert name == "rlvr-x"
        if isinstance(answer.get("raise"), Exception):
            raise answer["raise"]
        return answer

    monkeypatch.setattr(jobs, "describe_existing", describe_existing)
    monkeypatch.setattr(artifacts, "client", lambda service, **settings: object())
    return answer


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        ("InProgress", 3, "wait for it to finish: rlvr logs rlvr-x"),
        ("Stopping", 3, "wait for it to stop: rlvr status rlvr-x"),
        ("Failed", 4, "see why: rlvr logs rlvr-x --no-follow --tail 100"),
        (
            "Stopped",
            5,
            "a stopped job's model may be partial; to evaluate it anyway: "
            "rlvr eval --checkpoint s3://b/out/rlvr-x/output/model.tar.gz",
        ),
        ("Deleting", 1, "rlvr status rlvr-x"),  # a state rlvr has no advice for
    ],
)
def test_a_job_that_did_not_complete_is_named_with_its_exit_code_and_what_to_do(
    described, status, code, hint
):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact
    from rlvr_cli.core.errors import RlvrError

    described["TrainingJobStatus"] = status
    with pytest.raises(RlvrError) as raised:
        job_artifact("rlvr-x", profile=None, region=None)
    assert str(raised.value) == (f"job rlvr-x is {status}, not Completed (rlvr status exits {code}); {hint}")
    assert raised.value.code == code


def test_a_failed_jobs_reason_is_its_first_line_cut_at_200_characters(described):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact
    from rlvr_cli.core.errors import RlvrError

    described.update(
        TrainingJobStatus="Failed", FailureReason="  AlgorithmError: " + "x" * 300 + "\nTraceback"
    )
    with pytest.raises(RlvrError) as raised:
        job_artifact("rlvr-x", profile=None, region=None)
    reason = ("AlgorithmError: " + "x" * 300)[:200]
    assert str(raised.value).startswith(f"job rlvr-x is Failed ({reason}), not Completed")


def test_a_completed_jobs_model_and_settings_are_returned(described):
    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact

    described["TrainingJobStatus"] = "Completed"
    assert job_artifact("rlvr-x", profile="dev", region="eu-west-1") == (
        "rlvr-x",
        "s3://b/out/rlvr-x/output/model.tar.gz",
        {"profile": "dev", "region": "eu-west-1"},
    )


def test_an_aws_error_describing_the_job_names_the_job(described):
    import botocore.exceptions

    from rlvr_cli.cloud.sagemaker.artifacts import job_artifact
    from rlvr_cli.core.errors import RlvrError

    described["raise"] = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "DescribeTrainingJob"
    )
    with pytest.raises(RlvrError) as raised:
        job_artifact("rlvr-x", profile=None, region=None)
    assert str(raised.value).startswith("job rlvr-x: access denied (not allowed)")


def test_an_output_path_is_joined_after_its_trailing_slashes_only():
    from rlvr_cli.cloud.sagemaker.artifacts import _artifact_uri

    described = {"TrainingJobName": "rlvr-1", "OutputDataConfig": {"S3OutputPath": "s3://b/runs-X//"}}
    assert _artifact_uri(described) == "s3://b/runs-X/rlvr-1/output/model.tar.gz"


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        # Empty and "." parts do not hide a path under a link (links are named without them).
        (_member("a//b/c")[0], "lies under the link 'a/b'"),
        (_member("a/./b/c")[0], "lies under the link 'a/b'"),
        (_member("a/bc")[0], None),
        (_member("x", tarfile.SYMTYPE, "..")[0], "links outside the archive ('..')"),
        (_member("d/x", tarfile.SYMTYPE, "..\\..\\etc")[0], "links outside the archive ('..\\\\..\\\\etc')"),
        (_member("d/x", tarfile.SYMTYPE, "..\\y")[0], None),
        # A hard link's target is named from the archive's root, not from the link's folder.
        (_member("d/e/h", tarfile.LNKTYPE, "../y")[0], "links outside the archive ('../y')"),
        (_member("d/e/h", tarfile.LNKTYPE, "d/y")[0], None),
        (_member("d/e/s", tarfile.SYMTYPE, "../../y")[0], None),
        (_member("fifo", tarfile.FIFOTYPE)[0], "is a device file or FIFO"),
        (_member("dev", tarfile.CHRTYPE)[0], "is a device file or FIFO"),
    ],
)
def test_a_members_path_and_link_are_judged_after_normalising_them(member, problem):
    from rlvr_cli.cloud.sagemaker.artifacts import _member_problem

    assert _member_problem(member, links={"a/b"}) == problem


def test_an_archive_is_extracted_into_a_hidden_folder_beside_its_target(tmp_path: Path, monkeypatch):
    """Beside it, so the rename is on one file system; hidden and renamed only when complete, so a
    reader never sees half a checkpoint under the target's name."""
    from rlvr_cli.cloud.sagemaker.artifacts import unpack

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_gz(checkpoint_files()))
    entry = tmp_path / "entry"
    entry.mkdir()
    seen: list[list[str]] = []
    real = tarfile.TarFile.extractall

    def extractall(self, path, *args, **kwargs):
        seen.append(sorted(p.name for p in entry.iterdir()))
        assert Path(path).parent == entry
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    unpack(archive, entry / "model", "s3://b/model.tar.gz")
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".model.")
    assert sorted(p.name for p in entry.iterdir()) == ["model"]
    assert sorted(p.name for p in (entry / "model").iterdir()) == sorted(checkpoint_files())


def test_extracted_files_lose_setuid_and_write_bits_for_others(tmp_path: Path):
    """tarfile's `data` filter, after rlvr's own checks: a checkpoint's files are data."""
    from rlvr_cli.cloud.sagemaker.artifacts import unpack

    risky = tarfile.TarInfo("run.sh")
    risky.size, risky.mode = 3, 0o4777
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_gz(checkpoint_files(), [(risky, b"#!/")]))
    unpack(archive, tmp_path / "model", "s3://b/model.tar.gz")
    mode = (tmp_path / "model" / "run.sh").stat().st_mode & 0o7777
    assert mode & 0o4000 == 0 and mode & 0o022 == 0, oct(mode)


def test_a_download_lands_beside_the_archive_and_asks_for_the_version_it_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What rlvr sends S3 for one download (botocore's Stubber checks each call's parameters): the
    version HeadObject saw, for the object and for its part sizes; the bytes go to a hidden file
    beside the archive, which becomes the archive only once checked."""
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    import rlvr_cli.cloud.sagemaker.artifacts as artifacts
    from rlvr_cli.cloud.sagemaker.client import client
    from rlvr_cli.cloud.sagemaker.s3objects import from_head

    from .test_s3objects import composite_crc32, md5_of_parts

    data = bytes(range(256)) * 4
    parts = [data[:512], data[512:]]
    head = {
        "ContentLength": len(data),
        "ETag": f'"{md5_of_parts(parts)}"',
        "ChecksumCRC32": composite_crc32(parts),
        "VersionId": "v1",
    }
    obj = from_head("b", "rlvr/model.tar.gz", head)
    s3 = client("s3", region="us-east-1")
    wanted = {"Bucket": "b", "Key": "rlvr/model.tar.gz", "VersionId": "v1"}
    with Stubber(s3) as stub:
        stub.add_response("head_object", {"ContentLength": len(data), "ETag": head["ETag"]}, wanted)
        body = StreamingBody(io.BytesIO(data), len(data))
        stub.add_response("get_object", {"Body": body, "ContentLength": len(data)}, wanted)
        stub.add_response("head_object", {"ContentLength": 512}, {**wanted, "PartNumber": 1})

        archive = tmp_path / "entry" / "model.tar.gz"
        checked: list[Path] = []
        real = artifacts.verify_file

        def verify_file(client, obj, path: Path):
            checked.append(path)
            assert not archive.exists()
            return real(client, obj, path)

        monkeypatch.setattr(artifacts, "verify_file", verify_file)
        assert artifacts._download(s3, obj, archive, None) == [
            "size",
            "ChecksumCRC32 (composite of 2 parts)",
            "ETag (MD5 of 2 parts)",
        ]
        stub.assert_no_pending_responses()
    assert len(checked) == 1 and checked[0].parent == archive.parent
    assert checked[0].name.startswith(".model.tar.gz.") and checked[0].name.endswith(".download")
    assert archive.read_bytes() == data
    assert [p.name for p in archive.parent.iterdir()] == ["model.tar.gz"]


def test_a_checkpoint_is_fetched_with_the_jobs_settings_and_its_source_recorded(cache: Path, monkeypatch):
    """`fetch_checkpoint` without a server: the S3 client is made with the profile and region given,
    the archive is checked, unpacked into the cache entry named by the object's URI, ETag and size,
    and source.json records where it came from; an AWS error names the object."""
    import hashlib

    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    import rlvr_cli.cloud.sagemaker.artifacts as artifacts
    from rlvr_cli.cloud.sagemaker.client import client
    from rlvr_cli.core.errors import RlvrError

    archive = tar_gz(checkpoint_files())
    etag = hashlib.md5(archive).hexdigest()
    s3 = client("s3", region="us-east-1")
    asked: list[tuple] = []
    monkeypatch.setattr(
        artifacts, "client", lambda service, **settings: asked.append((service, settings)) or s3
    )
    uri = "s3://rlvr-b/rlvr/output/rlvr-7/output/model.tar.gz"
    where = {"Bucket": "rlvr-b", "Key": "rlvr/output/rlvr-7/output/model.tar.gz"}
    head = {"ContentLength": len(archive), "ETag": f'"{etag}"'}
    with Stubber(s3) as stub:
        stub.add_response("head_object", head, {**where, "ChecksumMode": "ENABLED"})
        stub.add_response("head_object", head, where)
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(archive), len(archive))}, where)
        seen: list[tuple[str, float, float | None]] = []
        fetched = artifacts.fetch_checkpoint(
            uri, profile="dev", region="eu-west-1", job="rlvr-7", progress=lambda *report: seen.append(report)
        )
        stub.assert_no_pending_responses()
    # The progress display hears of each byte received, under the object's key.
    assert seen[0] == (where["Key"], 0, len(archive)) and seen[-1] == (
        where["Key"],
        len(archive),
        len(archive),
    )
    assert asked == [("s3", {"profile": "dev", "region": "eu-west-1"})]
    identity = hashlib.sha256(f"{uri}\n{etag}\n{len(archive)}".encode()).hexdigest()[:16]
    entry = cache / f"rlvr-b-{identity}"
    assert fetched.as_dict() == {
        "s3_uri": uri,
        "job": "rlvr-7",
        "path": str(entry / "model"),
        "reused": False,
        "verified": ["size", "ETag (MD5)"],
    }
    assert fetched.label == "rlvr-7"
    assert sorted(p.name for p in (entry / "model").iterdir()) == sorted(checkpoint_files())
    assert json.loads((entry / "source.json").read_text()) == {
        **fetched.as_dict(),
        "etag": etag,
        "bytes": len(archive),
    }

    with Stubber(s3) as stub:
        stub.add_client_error("head_object", "AccessDenied", "Access Denied", 403)
        with pytest.raises(RlvrError) as raised:
            artifacts.fetch_checkpoint(uri.replace("rlvr-7", "rlvr-8"), profile=None, region=None)
    assert str(raised.value).startswith(f"{uri.replace('rlvr-7', 'rlvr-8')}: access denied (Access Denied)")
