"""Store an uploaded or built-in dataset, and resolve a job's dataset reference."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.orm import Session

from core.text import printable
from core.vocabulary import DataKind
from registry import datasets, orphans
from registry.artifacts import ArtifactStore, sha256_hex
from registry.models import Dataset
from services.api import builtin
from services.api.errors import UnsupportedUpload, UploadTooLarge
from training.errors import TargetMissing
from training.inspect import IMAGE_TARGET, inspect

CSV_TYPES = {
    "text/csv",
    "application/csv",
    "text/plain",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
# An NPZ's arrays may take this many times the upload limit once unpacked (images that
# np.savez_compressed packed); more is refused before it is decompressed.
NPZ_EXPANSION = 4
NPZ_TYPES = {
    "application/octet-stream",
    "application/zip",
    "application/x-npz",
    "application/x-zip-compressed",
}


def upload(
    session: Session,
    store: ArtifactStore,
    *,
    data: bytes,
    max_bytes: int,
    filename: str | None,
    content_type: str | None,
    kind: DataKind | None,
    target: str | None,
    name: str | None,
) -> tuple[Dataset, bool]:
    """Check and store an upload: a CSV table (with the target column to predict) or an
    NPZ of images. The same bytes with the same target return the stored row (False)."""
    if kind is None:
        kind = DataKind.IMAGE if data.startswith(b"PK\x03\x04") else DataKind.TABLE
    ctype = (content_type or "").split(";")[0].strip()
    if ctype and ctype not in (NPZ_TYPES if kind == DataKind.IMAGE else CSV_TYPES):
        expected = "application/octet-stream (an NPZ)" if kind == DataKind.IMAGE else "text/csv"
        raise UnsupportedUpload(f"the file was sent as {content_type!r}; expected {expected}")
    if len(data) > max_bytes:
        raise UploadTooLarge(f"the upload is larger than the {max_bytes}-byte limit")
    if kind == DataKind.TABLE and not target:
        raise TargetMissing("a CSV table needs the target form field: the column to predict")
    default_name = "upload.npz" if kind == DataKind.IMAGE else "upload.csv"
    dataset, created = store_dataset(
        session,
        store,
        data=data,
        # A file name is the client's too, but not a field it chose to send: made fit to
        # store and to log rather than refused.
        name=name or (filename and printable(filename, limit=200)) or default_name,
        source="upload",
        kind=kind,
        target=target or IMAGE_TARGET,
        max_npz_bytes=max_bytes * NPZ_EXPANSION,
    )
    session.commit()
    return dataset, created


def store_dataset(
    session: Session,
    store: ArtifactStore,
    *,
    data: bytes,
    name: str,
    source: str,
    kind: DataKind,
    target: str,
    max_npz_bytes: int | None = None,
) -> tuple[Dataset, bool]:
    """The dataset row for these bytes: the stored one, or a new one after the same checks
    the worker makes (training.inspect). Does not commit."""
    if kind == DataKind.IMAGE:
        target = IMAGE_TARGET
    sha256 = sha256_hex(data)
    existing = datasets.find_dataset(session, sha256=sha256, target=target)
    if existing is not None:
        return existing, False
    # kind, n_rows, columns, counts, shape
    summary = inspect(data, kind=kind, target=target, max_npz_bytes=max_npz_bytes)
    orphans.put_referenced(session, store, data, sha256=sha256)
    row = Dataset(
        name=name,
        source=source,
        sha256=sha256,
        size_bytes=len(data),
        target=target,
        **asdict(summary),
    )
    return datasets.add_dataset(session, row), True


def resolve(session: Session, store: ArtifactStore, ref: str) -> Dataset:
    """A dataset id, or `sklearn:<name>` for a built-in one (stored on first use)."""
    if not ref.startswith(builtin.PREFIX):
        return datasets.get_dataset(session, dataset_id=ref)
    name = ref.removeprefix(builtin.PREFIX)
    data, kind, target = builtin.materialise(name)
    dataset, _ = store_dataset(
        session, store, data=data, name=name, source="builtin", kind=kind, target=target
    )
    return dataset
