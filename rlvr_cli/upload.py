"""`rlvr upload`: prepared datasets to S3, verified, idempotent.

    rlvr upload --data data --s3 s3://my-bucket/rlvr/data

Each file goes to `PREFIX/{train,val,test}/dataset.json` and `PREFIX/manifest.json` with
`ChecksumAlgorithm=SHA256`, so S3 verifies what it received (per part for multipart uploads), and
with the file's full SHA-256 in the object metadata (`x-amz-meta-sha256`). A later upload compares
that metadata: identical objects are skipped, different ones are only replaced with `--force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from rlvr_cli import console
from rlvr_cli.aws import aws_errors, client, parse_s3_uri
from rlvr_cli.errors import RlvrError
from rlvr_cli.fsutil import sha256_file

FILES = ("train/dataset.json", "val/dataset.json", "test/dataset.json", "manifest.json")
MULTIPART_THRESHOLD = 16 * 1024 * 1024


def _remote_sha256(s3: Any, bucket: str, key: str) -> tuple[bool, str | None]:
    """(exists, sha256 from metadata or None)."""
    import botocore.exceptions

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False, None
        raise
    return True, head.get("Metadata", {}).get("sha256")


def _check_bucket(s3: Any, bucket: str) -> None:
    import botocore.exceptions

    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchBucket"):
            raise RlvrError(
                f"bucket {bucket} does not exist; create it (aws s3 mb s3://{bucket}) or fix --s3"
            ) from None
        raise


def upload_dataset(
    data: Path, uri: str, *, force: bool, profile: str | None, region: str | None
) -> dict[str, Any]:
    missing = [rel for rel in FILES if not (data / rel).is_file()]
    if missing:
        raise RlvrError(f"{data}: missing {', '.join(missing)}; run `rlvr prepare --output {data}` first")
    bucket, prefix = parse_s3_uri(uri)
    from boto3.s3.transfer import S3Transfer, TransferConfig

    s3 = client("s3", profile=profile, region=region)
    files = [(rel, data / rel, sha256_file(data / rel)) for rel in FILES]
    plan = []
    with aws_errors(f"s3://{bucket}"):
        _check_bucket(s3, bucket)
        for rel, path, digest in files:
            key = f"{prefix}/{rel}" if prefix else rel
            exists, remote = _remote_sha256(s3, bucket, key)
            if exists and remote == digest:
                action = "skipped"
            elif exists and not force:
                raise RlvrError(
                    f"s3://{bucket}/{key} exists with different content; pass --force to replace it or upload to another prefix"
                )
            else:
                action = "replaced" if exists else "uploaded"
            plan.append(
                {
                    "file": str(path),
                    "s3_uri": f"s3://{bucket}/{key}",
                    "key": key,
                    "sha256": digest,
                    "bytes": path.stat().st_size,
                    "action": action,
                }
            )

        total = sum(p["bytes"] for p in plan if p["action"] != "skipped")
        transfer = S3Transfer(s3, TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))
        with Progress(
            TextColumn("[bold]upload[/bold] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console.err,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=total or 1)
            for item in plan:
                if item["action"] == "skipped":
                    continue
                bar.update(task, description=item["key"])
                transfer.upload_file(
                    item["file"],
                    bucket,
                    item["key"],
                    extra_args={
                        "ChecksumAlgorithm": "SHA256",
                        "Metadata": {"sha256": item["sha256"]},
                        "ContentType": "application/json",
                    },
                    callback=lambda n: bar.advance(task, n),
                )
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    for item in plan:
        item.pop("key")
    return {
        "s3_uri": root,
        "channels": {"train": f"{root}/train/", "val": f"{root}/val/", "test": f"{root}/test/"},
        "files": plan,
    }
