"""`rlvr upload`: prepared datasets to S3, verified, idempotent.

    rlvr upload --data data --s3 s3://my-bucket/rlvr/data

Each file goes to `PREFIX/{train,val,test}/dataset.json` and `PREFIX/manifest.json` with
`ChecksumAlgorithm=SHA256`, so S3 verifies what it received (per part for multipart uploads), and
with the file's full SHA-256 in the object metadata (`x-amz-meta-sha256`).

An object already at a key is compared by what S3 itself keeps about its bytes (size, checksum,
MD5 ETag: `rlvr_cli.cloud.sagemaker.s3objects`), not by the metadata alone, which any writer can set: identical
objects are skipped, different ones are only replaced with `--force`. The metadata decides only
when S3 keeps no checksum. Every uploaded object is checked the same way afterwards.

The manifest goes last, only once every data file is on S3 and verified, and a manifest that the
upload is about to contradict is deleted first: a prefix with a manifest holds a complete upload,
and a failed upload leaves a prefix that `rlvr train --remote` refuses (`check_uploaded`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr_cli.cloud.sagemaker.client import aws_errors, client, describe_client_error, parse_s3_uri
from rlvr_cli.cloud.sagemaker.s3objects import RemoteObject, Verification, head, verify_file
from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.core.files import sha256_file
from rlvr_cli.core.progress import Counter, Progress
from rlvr_cli.data.layout import FILES, MANIFEST_FILE, SPLITS, PreparedDir, split_file

MULTIPART_THRESHOLD = 16 * 1024 * 1024


def same_content(s3: Any, remote: RemoteObject, path: Path, digest: str) -> Verification:
    """Whether the object holds the file's bytes, what was compared, and what differed."""
    verification = verify_file(s3, remote, path)
    if not verification.matches or verification.content_checked:
        return verification
    # S3 keeps no checksum rlvr can compute: the size matched, the metadata rlvr wrote decides.
    checked = [*verification.checked, "x-amz-meta-sha256"]
    if remote.metadata.get("sha256") == digest:
        return Verification(True, checked)
    return Verification(False, checked, "x-amz-meta-sha256 differs")


def _check_bucket(s3: Any, bucket: str) -> None:
    import botocore.exceptions

    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchBucket"):
            raise RlvrError(
                f"bucket {bucket} does not exist; create it (aws s3 mb s3://{bucket}) or fix --s3"
            ) from exc
        raise


def require_prepared(data: Path) -> list[tuple[str, Path, str]]:
    """(relative path, path, SHA-256) of every file of a prepared directory, checked to be there
    and described by its manifest before anything is sent or created (the default bucket)."""
    missing = [rel for rel in FILES if not (data / rel).is_file()]
    if missing:
        raise RlvrError(f"{data}: missing {', '.join(missing)}; run `rlvr prepare --output {data}` first")
    files = [(rel, data / rel, sha256_file(data / rel)) for rel in FILES]
    _check_local_manifest(data, {rel: digest for rel, _, digest in files})
    return files


def _check_local_manifest(data: Path, digests: dict[str, str]) -> None:
    """The manifest describes the files beside it: an upload's manifest vouches for them on S3."""
    manifest = PreparedDir(data).manifest()
    listed = manifest.files if manifest else {}
    for split in SPLITS:
        rel = split_file(split)
        if (listed.get(rel) or {}).get("sha256") != digests[rel]:
            raise UsageError(
                f"{data / MANIFEST_FILE} does not describe {data / rel} (changed since `rlvr prepare`?); "
                f"prepare {data} again before uploading it"
            )


def _upload(transfer: Any, item: dict[str, Any], bucket: str, callback: Any) -> None:
    from boto3.exceptions import S3UploadFailedError

    try:
        transfer.upload_file(
            item["file"],
            bucket,
            item["key"],
            extra_args={
                "ChecksumAlgorithm": "SHA256",
                "Metadata": {"sha256": item["sha256"]},
                "ContentType": "application/json",
            },
            callback=callback,
        )
    except S3UploadFailedError as exc:
        # boto3 wraps the service's error (a denied PutObject or CreateMultipartUpload) in its own
        # exception with the original as context; the user needs the service's reason.
        import botocore.exceptions

        cause = exc.__context__
        reason = (
            describe_client_error(cause)
            if isinstance(cause, botocore.exceptions.ClientError)
            else str(exc).rsplit(": ", 1)[-1]
        )
        raise RlvrError(f"uploading {item['file']} to {item['s3_uri']}: {reason}") from exc


def _verify_uploaded(s3: Any, bucket: str, item: dict[str, Any]) -> list[str]:
    """Read back what S3 stored and compare it with the local file."""
    remote = head(s3, bucket, item["key"])
    if remote is None:
        raise RlvrError(f"{item['s3_uri']}: missing right after its upload; run the upload again")
    verification = same_content(s3, remote, Path(item["file"]), item["sha256"])
    if not verification.matches:
        raise RlvrError(
            f"{item['s3_uri']}: S3 holds different content than {item['file']} right after the upload "
            f"({verification.mismatch}); run the upload again"
        )
    return verification.checked


def upload_dataset(
    data: Path,
    uri: str,
    *,
    force: bool,
    profile: str | None,
    region: str | None,
    progress: Progress | None = None,
    files: list[tuple[str, Path, str]] | None = None,
) -> dict[str, Any]:
    """Upload a prepared directory; `files` is `require_prepared(data)` when the caller has it."""
    files = files or require_prepared(data)
    bucket, prefix = parse_s3_uri(uri)
    from boto3.s3.transfer import S3Transfer, TransferConfig

    s3 = client("s3", profile=profile, region=region)
    plan = []
    with aws_errors(f"s3://{bucket}"):
        _check_bucket(s3, bucket)
        for rel, path, digest in files:
            key = f"{prefix}/{rel}" if prefix else rel
            remote = head(s3, bucket, key)
            verification = same_content(s3, remote, path, digest) if remote else None
            same = verification is not None and verification.matches
            if same:
                action = "skipped"
            elif remote and not force:
                raise RlvrError(
                    f"s3://{bucket}/{key} exists with different content ({verification.mismatch}); "
                    "pass --force to replace it or upload to another prefix"
                )
            else:
                action = "replaced" if remote else "uploaded"
            plan.append(
                {
                    "file": str(path),
                    "s3_uri": f"s3://{bucket}/{key}",
                    "key": key,
                    "sha256": digest,
                    "bytes": path.stat().st_size,
                    "action": action,
                    "verified": verification.checked if same else None,
                    "remote": remote is not None,
                }
            )

        manifest = plan[-1]
        if any(item["action"] == "replaced" for item in plan[:-1]) and manifest["remote"]:
            # The old manifest vouches for the old files: gone before any of them changes, and
            # uploaded again after them.
            s3.delete_object(Bucket=bucket, Key=manifest["key"])
            manifest.update(action="replaced", verified=None)
        changing = [item for item in plan if item["action"] != "skipped"]
        transfer = S3Transfer(s3, TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))
        sent = Counter(progress, sum(p["bytes"] for p in changing))
        for item in changing:  # in FILES order: the manifest last
            sent.describe(item["key"])
            _upload(transfer, item, bucket, callback=sent.advance)
            item["verified"] = _verify_uploaded(s3, bucket, item)
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    for item in plan:
        item.pop("key")
        item.pop("remote")
    return {
        "s3_uri": root,
        "channels": {split: f"{root}/{split}/" for split in SPLITS},
        "files": plan,
    }


def check_uploaded(s3: Any, uri: str) -> dict[str, Any]:
    """The manifest of the upload at `uri`, once every data file it lists is there as it describes.

    A training job must not start on a partial or mixed upload: no manifest (an upload that failed
    or never ran), an unreadable one, or an object whose size or SHA-256 differs from the manifest's
    is one error that names `rlvr upload`.
    """
    import json

    import botocore.exceptions

    bucket, prefix = parse_s3_uri(uri)
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    again = f"run `rlvr upload --data DIR --s3 {root}` (again)"

    def key(rel: str) -> str:
        return f"{prefix}/{rel}" if prefix else rel

    try:
        body = s3.get_object(Bucket=bucket, Key=key(MANIFEST_FILE))["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            raise UsageError(
                f"{root}/{MANIFEST_FILE} not found: {root} holds no complete rlvr upload; {again}"
            ) from exc
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not all(isinstance(listed.get(split_file(s)), dict) for s in SPLITS):
        raise UsageError(f"{root}/{MANIFEST_FILE} is not an rlvr manifest; {again}")
    for split in SPLITS:
        rel = split_file(split)
        expected = listed[rel]
        remote = head(s3, bucket, key(rel))
        if remote is None:
            raise UsageError(f"{root}/{rel} is missing but {MANIFEST_FILE} lists it; {again}")
        if remote.size != expected.get("bytes"):
            problem = f"{remote.size} bytes, the manifest says {expected.get('bytes')}"
        elif not _sha256_matches(s3, remote, str(expected.get("sha256"))):
            problem = "its SHA-256 differs from the manifest's"
        else:
            continue
        raise UsageError(f"{root}/{rel} disagrees with {MANIFEST_FILE} ({problem}); {again}")
    return manifest


def _sha256_matches(s3: Any, remote: RemoteObject, digest: str) -> bool:
    """The object's SHA-256 is `digest` (hex): by S3's full-object checksum, else the whole-file
    digest `rlvr upload` wrote into the metadata (S3 verified each part's checksum on the way), else,
    for an object put there by other means, by reading it (data files are megabytes)."""
    import base64
    import hashlib

    single_part = remote.parts is None and remote.checksum_type != "COMPOSITE"
    full = remote.checksums.get("SHA256") if single_part else None
    if full is not None:
        return base64.b64decode(full).hex() == digest
    if remote.metadata.get("sha256"):
        return remote.metadata["sha256"] == digest
    body = s3.get_object(Bucket=remote.bucket, Key=remote.key)["Body"]
    sha = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        sha.update(chunk)
    return sha.hexdigest() == digest
