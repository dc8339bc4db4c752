"""Content-addressed artifact store: files are named by their sha256 and checked on read.

Two backends behind one protocol: a local folder (the embedded default, or a shared
volume) and an S3-compatible bucket. Both write atomically — a temp file renamed into
place, or one S3 PUT, which is all-or-nothing — and both hash every read, so a corrupted
or truncated artifact is refused (ArtifactCorrupt), never served.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from registry.errors import ArtifactCorrupt, ArtifactMissing, ArtifactStoreUnavailable

if TYPE_CHECKING:
    from registry.settings import RegistrySettings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_digest(sha256: str) -> None:
    if not _SHA256.fullmatch(sha256):
        raise ArtifactMissing(f"{sha256!r} is not a sha256 hex digest")


def _verified(sha256: str, data: bytes, where: str) -> bytes:
    actual = sha256_hex(data)
    if actual != sha256:
        raise ArtifactCorrupt(
            f"artifact {sha256} in {where} is corrupt: its content hashes to {actual}; "
            "refusing to use it"
        )
    return data


class ArtifactStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256. Storing the same bytes twice writes once;
        storing them over a damaged copy replaces it."""
        ...

    def get(self, sha256: str) -> bytes:
        """Return the bytes whose hash is `sha256`; raises ArtifactMissing or ArtifactCorrupt."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None:
        """Remove the artifact; a missing one is not an error."""
        ...


class LocalArtifactStore:
    """A folder on disk (or a shared volume): `root/ab/<sha256>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        _check_digest(sha256)
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._path(digest)
        if path.exists() and sha256_hex(path.read_bytes()) == digest:
            return digest
        # Absent, or a damaged copy under the right name: storing the bytes again repairs it.
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: a crash mid-write leaves only a temp file,
        # never a partial file under the real name.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {sha256} is not in the store at {self.root}") from None
        return _verified(sha256, data, str(self.root))

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


class S3ArtifactStore:
    """An S3-compatible bucket: `s3://bucket/<prefix>ab/<sha256>`.

    A PUT either stores the whole object or nothing, so there is no temp name to rename;
    the upload also carries its SHA-256 checksum, which the server verifies before it
    accepts the object.
    """

    def __init__(self, client: Any, *, bucket: str, prefix: str = "") -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def _key(self, sha256: str) -> str:
        _check_digest(sha256)
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactMissing(
                    f"artifact {kwargs.get('Key')} is not in {self._where()}"
                ) from None
            raise ArtifactStoreUnavailable(
                f"S3 {what} on {self._where()} failed: {code or exc}"
            ) from exc
        except BotoCoreError as exc:
            raise ArtifactStoreUnavailable(f"S3 {what} on {self._where()} failed: {exc}") from exc

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        # The object's own SHA-256 checksum (kept by the server since our PUT) says whether
        # what is there is these bytes; an object replaced behind the store is written again.
        if self._stored_checksum(digest) == base64.b64encode(bytes.fromhex(digest)).decode():
            return digest
        self._call(
            "put_object",
            self._s3.put_object,
            Key=self._key(digest),
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        return digest

    def get(self, sha256: str) -> bytes:
        answer = self._call("get_object", self._s3.get_object, Key=self._key(sha256))
        return _verified(sha256, answer["Body"].read(), self._where())

    def exists(self, sha256: str) -> bool:
        try:
            self._call("head_object", self._s3.head_object, Key=self._key(sha256))
        except ArtifactMissing:
            return False
        return True

    def _stored_checksum(self, sha256: str) -> str | None:
        """The base64 SHA-256 the server holds for the object; None when it is absent or
        was stored without one."""
        try:
            head = self._call(
                "head_object", self._s3.head_object, Key=self._key(sha256), ChecksumMode="ENABLED"
            )
        except ArtifactMissing:
            return None
        checksum = head.get("ChecksumSHA256")
        return str(checksum) if checksum else None

    def delete(self, sha256: str) -> None:
        self._call("delete_object", self._s3.delete_object, Key=self._key(sha256))


def make_artifact_store(settings: RegistrySettings) -> ArtifactStore:
    """The store the settings name (`ARTIFACT_STORE=local|s3`); every process uses this."""
    if settings.artifact_store == "local":
        return LocalArtifactStore(settings.artifact_root)
    import boto3  # only processes configured for S3 pay for importing it
    from botocore.config import Config

    assert settings.s3_bucket is not None  # the settings validator requires it for s3
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=(
            settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None
        ),
        aws_secret_access_key=(
            settings.aws_secret_access_key.get_secret_value()
            if settings.aws_secret_access_key
            else None
        ),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )
    return S3ArtifactStore(client, bucket=settings.s3_bucket, prefix=settings.s3_prefix)
