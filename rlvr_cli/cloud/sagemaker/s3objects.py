"""What S3 knows about an object's bytes, and checking a local file against it.

S3 keeps up to three things that identify an object's content:

- its size (ContentLength);
- a checksum (`x-amz-checksum-*`, returned by HeadObject with ChecksumMode=ENABLED) when the
  uploader sent one: `ChecksumAlgorithm=SHA256`, or CRC32 by default in recent SDKs. For a
  multipart upload it is usually COMPOSITE: the checksum of the concatenated part checksums,
  written `VALUE-N`; a FULL_OBJECT checksum (CRC types) covers the whole object;
- the ETag: the MD5 of the bytes for a single-part upload, the MD5 of the concatenated part MD5s
  (`HEX-N`) for a multipart one; neither under SSE-KMS or SSE-C, where the ETag is opaque.

A composite value needs the part boundaries. HeadObject with PartNumber gives a part's size; the
usual uploaders (boto3, the AWS CLI, SageMaker) cut equal parts, so part 1's size gives all of
them, and every part is asked for only if that guess does not reproduce S3's value.

Nothing here imports boto3 or an ML library: callers pass a botocore S3 client.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(?:-(\d+))?$")
_PARTS = re.compile(r"-(\d+)$")


class _Crc32:
    """hashlib's interface over zlib.crc32, so CRC32 checksums are checked like the others."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _md5() -> Any:
    return hashlib.md5(usedforsecurity=False)  # an integrity check, allowed on FIPS systems


# S3 checksum algorithms that the standard library computes; CRC32C and CRC64NVME need extra packages.
ALGORITHMS: dict[str, Callable[[], Any]] = {"SHA256": hashlib.sha256, "SHA1": hashlib.sha1, "CRC32": _Crc32}


@dataclass
class RemoteObject:
    bucket: str
    key: str
    size: int
    etag: str  # without quotes
    checksums: dict[str, str]  # algorithm -> base64 value, without a "-N" suffix
    checksum_type: str | None  # COMPOSITE, FULL_OBJECT, or None when S3 does not say (see _checks)
    parts: int | None  # number of parts of a multipart upload, from the ETag
    etag_is_md5: bool
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def head(s3: Any, bucket: str, key: str) -> RemoteObject | None:
    """HeadObject with checksums, or None when the object does not exist."""
    import botocore.exceptions

    try:
        response = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return from_head(bucket, key, response)


def from_head(bucket: str, key: str, response: dict[str, Any]) -> RemoteObject:
    etag = str(response.get("ETag", "")).strip('"')
    parts_match = _PARTS.search(etag)
    checksums = {}
    checksum_type = response.get("ChecksumType")
    for name, value in response.items():
        if name.startswith("Checksum") and name != "ChecksumType" and isinstance(value, str):
            checksums[name[len("Checksum") :]] = _PARTS.sub("", value)
            if _PARTS.search(value):
                checksum_type = checksum_type or "COMPOSITE"
    # SSE-KMS and SSE-C objects have ETags that are not MD5 digests.
    encrypted = str(response.get("ServerSideEncryption", "")).startswith("aws:kms") or bool(
        response.get("SSECustomerAlgorithm")
    )
    return RemoteObject(
        bucket=bucket,
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=etag,
        checksums=checksums,
        checksum_type=checksum_type,
        parts=int(parts_match.group(1)) if parts_match else None,
        etag_is_md5=not encrypted and bool(_MD5_ETAG.match(etag)),
        metadata=dict(response.get("Metadata") or {}),
        version_id=response.get("VersionId"),
    )


@dataclass
class Verification:
    matches: bool
    checked: list[str]  # what was compared, e.g. ["size", "ChecksumSHA256 (composite of 3 parts)"]
    mismatch: str | None = None  # what differed, for the error line

    @property
    def content_checked(self) -> bool:
        """True when a checksum of the bytes was compared, not only the size."""
        return len(self.checked) > 1


@dataclass
class _Check:
    group: str  # one value S3 keeps; it matches when any of its checks does
    label: str
    expected: str
    composite: bool
    factory: Callable[[], Any]
    encode: Callable[[bytes], str]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _checks(obj: RemoteObject) -> list[_Check]:
    multipart = obj.parts is not None
    checks = []
    for algorithm, value in sorted(obj.checksums.items()):
        factory = ALGORITHMS.get(algorithm)
        if factory is None:
            continue
        name = f"Checksum{algorithm}"
        composite_label = f"{name} (composite of {obj.parts} parts)"
        if not multipart or obj.checksum_type == "FULL_OBJECT":
            checks.append(_Check(name, name, value, False, factory, _b64))
        elif obj.checksum_type == "COMPOSITE":
            checks.append(_Check(name, composite_label, value, True, factory, _b64))
        else:
            # A multipart object whose checksum type S3 did not state (older APIs and emulators
            # omit it): either kind may be meant, so either kind matching is a match.
            checks.append(_Check(name, composite_label, value, True, factory, _b64))
            checks.append(_Check(name, name, value, False, factory, _b64))
    if obj.etag_is_md5:
        label = f"ETag (MD5 of {obj.parts} parts)" if multipart else "ETag (MD5)"
        checks.append(_Check("ETag", label, _PARTS.sub("", obj.etag), multipart, _md5, lambda d: d.hex()))
    return checks


def _failed_groups(checks: list[_Check], values: list[str]) -> list[str]:
    groups: dict[str, bool] = {}
    for check, value in zip(checks, values, strict=True):
        groups[check.group] = groups.get(check.group, False) or value == check.expected
    return [group for group, ok in groups.items() if not ok]


def _part_sizes(s3: Any, obj: RemoteObject, *, exact: bool) -> list[int]:
    assert obj.parts
    extra = {"VersionId": obj.version_id} if obj.version_id else {}
    if not exact:
        first = int(s3.head_object(Bucket=obj.bucket, Key=obj.key, PartNumber=1, **extra)["ContentLength"])
        last = obj.size - first * (obj.parts - 1)
        if first > 0 and 0 < last <= first:
            return [first] * (obj.parts - 1) + [last]
    return [
        int(s3.head_object(Bucket=obj.bucket, Key=obj.key, PartNumber=n, **extra)["ContentLength"])
        for n in range(1, obj.parts + 1)
    ]


def _compute(path: Path, checks: list[_Check], part_sizes: list[int] | None) -> list[str]:
    """One read of the file: each check's value as S3 would write it."""
    whole = [c.factory() if not c.composite else None for c in checks]
    part_digests: list[list[bytes]] = [[] for _ in checks]
    boundaries = list(part_sizes or [])
    current = [c.factory() if c.composite else None for c in checks]
    left = boundaries.pop(0) if boundaries else None
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            view = memoryview(block)
            while view:
                take = len(view) if left is None else min(left, len(view))
                piece = view[:take]
                for i, check in enumerate(checks):
                    (current[i] if check.composite else whole[i]).update(piece)
                view = view[take:]
                if left is not None:
                    left -= take
                    if left == 0:
                        for i, check in enumerate(checks):
                            if check.composite:
                                part_digests[i].append(current[i].digest())
                                current[i] = check.factory()
                        left = boundaries.pop(0) if boundaries else None
    values = []
    for i, check in enumerate(checks):
        if check.composite:
            combined = check.factory()
            combined.update(b"".join(part_digests[i]))
            values.append(check.encode(combined.digest()))
        else:
            values.append(check.encode(whole[i].digest()))
    return values


def verify_file(s3: Any, obj: RemoteObject, path: Path) -> Verification:
    """Compare a local file with what S3 keeps about `obj`: size, then every checksum it can."""
    size = path.stat().st_size
    if size != obj.size:
        return Verification(False, ["size"], f"size: S3 has {obj.size:,} bytes, the local file {size:,}")
    checks = _checks(obj)
    if not checks:
        return Verification(True, ["size"])
    composite = any(c.composite for c in checks)
    sizes = _part_sizes(s3, obj, exact=False) if composite else None
    values = _compute(path, checks, sizes)
    failed = _failed_groups(checks, values)
    if composite and failed:
        # The equal-parts guess may be wrong: ask S3 for every part's size and compute again.
        exact = _part_sizes(s3, obj, exact=True)
        if exact != sizes:
            values = _compute(path, checks, exact)
            failed = _failed_groups(checks, values)
    if failed:
        labels = [c.label for c in checks if c.group == failed[0]]
        return Verification(False, ["size", *(c.label for c in checks)], f"{' / '.join(labels)} differs")
    # Name what matched: for an ambiguous checksum, the kind that matched.
    matched = [c.label for c, v in zip(checks, values, strict=True) if v == c.expected]
    return Verification(True, ["size", *dict.fromkeys(matched)])
