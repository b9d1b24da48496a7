"""What rlvr reads from S3's HeadObject, and how a downloaded file is checked against it.

No server: the responses are written here as botocore hands them over (HeadObject's output shape),
and the checksums are computed with hashlib and zlib as S3 computes them. What rlvr asks S3 (a
part's size) is recorded by `Parts`. The download itself, through moto, is in test_artifacts.py.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import botocore.exceptions
import pytest

from rlvr_cli.cloud.sagemaker.s3objects import ALGORITHMS, Verification, from_head, head, verify_file

DATA = bytes(range(256)) * 3  # 768 bytes


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def sha256(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


def sha1(data: bytes) -> str:
    return b64(hashlib.sha1(data).digest())


def composite(digest, parts: list[bytes]) -> str:
    """S3's COMPOSITE checksum: the checksum of the parts' checksums, `-N` after it."""
    return b64(digest(b"".join(digest(p).digest() for p in parts)).digest()) + f"-{len(parts)}"


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, start = [], 0
    for size in sizes:
        out.append(data[start : start + size])
        start += size
    return out


# A multipart upload under SSE-KMS: the ETag tells the part count, not an MD5.
KMS_MULTIPART = {"ETag": '"' + "0" * 32 + '-3"', "ServerSideEncryption": "aws:kms"}


class Parts:
    """HeadObject with a PartNumber, for an object uploaded in parts of these sizes; records the calls."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.asked: list[dict] = []

    def head_object(self, **kwargs) -> dict:
        self.asked.append(kwargs)
        return {"ContentLength": self.sizes[kwargs["PartNumber"] - 1]}


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(DATA)
    return path


# --- HeadObject's response -------------------------------------------------------------------------------


def test_a_head_response_is_read_field_by_field():
    md5 = hashlib.md5(DATA).hexdigest()
    response = {
        "ContentLength": len(DATA),
        "ETag": f'"{md5}"',
        "ChecksumSHA256": sha256(DATA),
        "ChecksumType": "FULL_OBJECT",
        "ServerSideEncryption": "AES256",  # S3-managed keys: the ETag is still the MD5
        "Metadata": {"rlvr-task": "gsm8k"},
        "VersionId": "v3",
        "ContentType": "application/gzip",
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }
    obj = from_head("bucket", "rlvr/model.tar.gz", response)
    assert obj.uri == "s3://bucket/rlvr/model.tar.gz"
    assert (obj.size, obj.etag, obj.parts, obj.etag_is_md5) == (768, md5, None, True)
    assert obj.checksums == {"SHA256": sha256(DATA)}  # ChecksumType and the other strings are not checksums
    assert obj.checksum_type == "FULL_OBJECT"
    assert obj.metadata == {"rlvr-task": "gsm8k"}
    assert obj.version_id == "v3"


def test_a_multipart_checksum_is_read_without_its_part_count_and_as_composite_when_s3_does_not_say():
    parts = split(DATA, [256, 256, 256])
    value = composite(hashlib.sha256, parts)
    obj = from_head("b", "k", {"ContentLength": 768, "ETag": '"' + "0" * 32 + '-3"', "ChecksumSHA256": value})
    assert obj.checksums == {"SHA256": value[: -len("-3")]}
    assert (obj.checksum_type, obj.parts, obj.etag_is_md5) == ("COMPOSITE", 3, True)
    stated = from_head(
        "b", "k", {"ContentLength": 768, "ChecksumCRC32": "AAAAAA==-3", "ChecksumType": "FULL_OBJECT"}
    )
    assert stated.checksum_type == "FULL_OBJECT"  # what S3 states wins over the suffix


def test_an_object_without_etag_metadata_or_version_has_empty_ones():
    obj = from_head("b", "k", {"ContentLength": 5})
    assert (obj.etag, obj.etag_is_md5, obj.checksums, obj.checksum_type) == ("", False, {}, None)
    assert (obj.metadata, obj.version_id) == ({}, None)


@pytest.mark.parametrize(
    ("encryption", "is_md5"),
    [
        ({"ServerSideEncryption": "AES256"}, True),
        ({"ServerSideEncryption": "aws:kms"}, False),
        ({"ServerSideEncryption": "aws:kms:dsse"}, False),
        ({"SSECustomerAlgorithm": "AES256"}, False),  # SSE-C: the ETag is not the MD5 of the bytes
        ({}, True),
    ],
)
def test_an_etag_is_an_md5_only_without_kms_or_customer_keys(encryption, is_md5):
    etag = hashlib.md5(DATA).hexdigest()
    assert (
        from_head("b", "k", {"ContentLength": 768, "ETag": f'"{etag}"', **encryption}).etag_is_md5 is is_md5
    )


class Missing:
    def __init__(self, error: dict) -> None:
        self.error = error
        self.asked: list[dict] = []

    def head_object(self, **kwargs):
        self.asked.append(kwargs)
        raise botocore.exceptions.ClientError(self.error, "HeadObject")


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NotFound"])
def test_a_missing_object_is_none(code):
    s3 = Missing({"Error": {"Code": code, "Message": "Not Found"}})
    assert head(s3, "b", "k") is None
    assert s3.asked == [{"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED"}]


@pytest.mark.parametrize("error", [{"Error": {"Code": "AccessDenied", "Message": "no"}}, {}])
def test_other_head_failures_reach_the_caller(error):
    with pytest.raises(botocore.exceptions.ClientError):
        head(Missing(error), "b", "k")


# --- a local file against S3's record --------------------------------------------------------------------


def test_crc32_is_computed_over_the_pieces_of_a_file_as_over_the_whole():
    """A large file is read in blocks (and a multipart one cut at part boundaries): CRC32 runs on,
    as hashlib's digests do, and is written big-endian, as S3 encodes it."""
    crc = ALGORITHMS["CRC32"]()
    for piece in (b"model ", b"weights ", b"in three pieces"):
        crc.update(piece)
    assert crc.digest() == zlib.crc32(b"model weights in three pieces").to_bytes(4, "big")


@pytest.mark.parametrize(
    ("value", "stated", "checked", "mismatch"),
    [
        ("composite", "COMPOSITE", "ChecksumCRC32 (composite of 3 parts)", None),
        ("full", "FULL_OBJECT", "ChecksumCRC32", None),
        # The type S3 states is the only kind that may match.
        ("full", "COMPOSITE", None, "ChecksumCRC32 (composite of 3 parts) differs"),
        ("composite", "FULL_OBJECT", None, "ChecksumCRC32 differs"),
        # Unstated (older APIs, emulators): either kind, and the one that matched is named.
        ("full", None, "ChecksumCRC32", None),
        ("composite", None, "ChecksumCRC32 (composite of 3 parts)", None),
    ],
)
def test_a_multipart_checksum_is_checked_as_the_kind_s3_states(blob: Path, value, stated, checked, mismatch):
    sizes = [256, 256, 256]
    parts = split(DATA, sizes)
    values = {"full": crc32(DATA), "composite": composite_crc32(parts).removesuffix("-3")}
    response = {
        "ContentLength": len(DATA),
        "ETag": f'"{md5_of_parts(parts)}"',
        "ChecksumCRC32": values[value],
    }
    if stated:
        response["ChecksumType"] = stated
    verification = verify_file(Parts(sizes), from_head("b", "blob", response), blob)
    assert verification.mismatch == mismatch
    assert verification.matches == (mismatch is None)
    if checked:
        assert verification.checked == ["size", checked, "ETag (MD5 of 3 parts)"]


def test_a_file_of_another_size_is_refused_before_any_checksum(blob: Path):
    obj = from_head("b", "k", {"ContentLength": 1000, "ChecksumSHA256": sha256(DATA)})
    verification = verify_file(Parts([]), obj, blob)
    assert verification == Verification(False, ["size"], "size: S3 has 1,000 bytes, the local file 768")
    assert not verification.content_checked


def test_a_file_s3_keeps_no_computable_checksum_of_is_checked_by_size_alone(blob: Path):
    # CRC64NVME needs a package rlvr does not use; an SSE-KMS ETag is not an MD5.
    response = {"ContentLength": 768, "ETag": '"' + "e" * 32 + '"', "ServerSideEncryption": "aws:kms"}
    verification = verify_file(
        Parts([]), from_head("b", "k", {**response, "ChecksumCRC64NVME": "AAAAAAAAAAA="}), blob
    )
    assert verification == Verification(True, ["size"])
    assert not verification.content_checked


def test_a_checksum_rlvr_cannot_compute_does_not_hide_one_it_can(blob: Path):
    """Algorithms are taken in name order: CRC64NVME comes before SHA256 and is skipped, not an end."""
    response = {"ContentLength": 768, "ChecksumCRC64NVME": "AAAAAAAAAAA=", "ChecksumSHA256": sha256(DATA)}
    verification = verify_file(Parts([]), from_head("b", "k", response), blob)
    assert verification == Verification(True, ["size", "ChecksumSHA256"])
    assert verification.content_checked


@pytest.mark.parametrize("multipart", [False, True])
def test_every_checksum_s3_keeps_must_match_not_just_one(blob: Path, multipart: bool):
    """SHA1 matches, SHA256 does not: the file is not the object."""
    other = DATA[:-1] + b"!"
    if multipart:
        parts = split(DATA, [256, 256, 256])
        response = {
            "ChecksumSHA1": composite(hashlib.sha1, parts),
            "ChecksumSHA256": composite(hashlib.sha256, split(other, [256, 256, 256])),
            "ChecksumType": "COMPOSITE",
            **KMS_MULTIPART,
        }
        wrong = "ChecksumSHA256 (composite of 3 parts)"
    else:
        response = {"ChecksumSHA1": sha1(DATA), "ChecksumSHA256": sha256(other)}
        wrong = "ChecksumSHA256"
    verification = verify_file(
        Parts([256, 256, 256]), from_head("b", "k", {"ContentLength": 768, **response}), blob
    )
    assert (verification.matches, verification.mismatch) == (False, f"{wrong} differs")


def test_what_was_checked_is_named(blob: Path):
    md5 = hashlib.md5(DATA).hexdigest()
    response = {"ContentLength": 768, "ETag": f'"{md5}"', "ChecksumSHA256": sha256(DATA)}
    verification = verify_file(Parts([]), from_head("b", "k", response), blob)
    assert verification == Verification(True, ["size", "ChecksumSHA256", "ETag (MD5)"])


def test_a_checksum_of_unstated_kind_that_matches_neither_kind_names_both(blob: Path):
    """A multipart object's checksum without `-N` and without ChecksumType (older APIs, emulators):
    either kind may be meant, and when neither matches both are named."""
    wrong = crc32(DATA[::-1])
    response = {"ContentLength": 768, "ChecksumCRC32": wrong, **KMS_MULTIPART}
    verification = verify_file(Parts([256, 256, 256]), from_head("b", "k", response), blob)
    assert verification.mismatch == "ChecksumCRC32 (composite of 3 parts) / ChecksumCRC32 differs"


def test_unequal_parts_are_found_when_the_equal_parts_guess_fails(blob: Path):
    """Parts of 256, 200 and 312 bytes: part 1's size suggests 256 / 256 / 256, which is a possible
    cut but the wrong one; every part's size is then asked for, and the file checked again."""
    sizes = [256, 200, 312]
    response = {
        "ContentLength": 768,
        "ETag": f'"{md5_of_parts(split(DATA, sizes))}"',
        "ChecksumCRC32": composite_crc32(split(DATA, sizes)),
        "VersionId": "v7",
    }
    s3 = Parts(sizes)
    verification = verify_file(s3, from_head("b", "k", response), blob)
    assert verification == Verification(
        True, ["size", "ChecksumCRC32 (composite of 3 parts)", "ETag (MD5 of 3 parts)"]
    )
    asked = [(call["PartNumber"], call.get("VersionId")) for call in s3.asked]
    assert asked == [(1, "v7"), (1, "v7"), (2, "v7"), (3, "v7")]  # the guess, then every part


def test_a_file_that_differs_in_a_later_part_is_refused_after_every_part_was_asked(blob: Path):
    sizes = [256, 200, 312]
    changed = DATA[:600] + b"?" + DATA[601:]
    response = {
        "ContentLength": 768,
        "ChecksumCRC32": composite_crc32(split(changed, sizes)),
        "ChecksumType": "COMPOSITE",
        **KMS_MULTIPART,
    }
    s3 = Parts(sizes)
    verification = verify_file(s3, from_head("b", "k", response), blob)
    assert verification == Verification(
        False,
        ["size", "ChecksumCRC32 (composite of 3 parts)"],
        "ChecksumCRC32 (composite of 3 parts) differs",
    )
    assert [call["PartNumber"] for call in s3.asked] == [1, 1, 2, 3]


def test_an_impossible_equal_parts_guess_asks_every_part_at_once(blob: Path):
    """Part 1 has 400 of the 768 bytes: two more parts of 400 cannot be, so every part's size is
    asked for at once, and once."""
    sizes = [400, 200, 168]
    response = {
        "ContentLength": 768,
        "ChecksumCRC32": composite_crc32(split(DATA, sizes)),
        "ChecksumType": "COMPOSITE",
        **KMS_MULTIPART,
    }
    s3 = Parts(sizes)
    assert verify_file(s3, from_head("b", "k", response), blob).matches
    assert [call["PartNumber"] for call in s3.asked] == [1, 1, 2, 3]


def md5_of_parts(parts: list[bytes]) -> str:
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


def composite_crc32(parts: list[bytes]) -> str:
    return crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)) + f"-{len(parts)}"
