"""Content-addressed artifact store: files are named by their sha256 and checked on read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from registry.errors import ArtifactCorrupt, ArtifactMissing


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256. Storing the same bytes twice is a no-op."""
        ...

    def get(self, sha256: str) -> bytes:
        """Return the bytes whose hash is `sha256`; raises ArtifactMissing or ArtifactCorrupt."""
        ...

    def exists(self, sha256: str) -> bool: ...


class LocalArtifactStore:
    """A folder on disk (or a shared volume): `root/ab/<sha256>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ArtifactMissing(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._path(digest)
        if path.exists():
            return digest
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
        actual = sha256_hex(data)
        if actual != sha256:
            raise ArtifactCorrupt(
                f"artifact {sha256} is corrupt: its content hashes to {actual}; refusing to use it"
            )
        return data

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()
