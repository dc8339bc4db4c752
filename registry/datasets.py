"""Datasets: uploaded or built-in tables and image arrays, stored by content hash."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import DatasetNotFound
from registry.models import Dataset


def find_dataset(session: Session, *, sha256: str, target: str) -> Dataset | None:
    return session.scalars(
        select(Dataset).where(Dataset.sha256 == sha256, Dataset.target == target)
    ).first()


def create_dataset(
    session: Session,
    *,
    name: str,
    source: str,
    sha256: str,
    size_bytes: int,
    target: str,
    n_rows: int,
    columns: list[dict[str, str]],
    class_counts: dict[str, int] | None,
    kind: str = "table",
    shape: list[int] | None = None,
) -> Dataset:
    dataset = Dataset(
        kind=kind,
        shape=shape,
        name=name,
        source=source,
        sha256=sha256,
        size_bytes=size_bytes,
        target=target,
        n_rows=n_rows,
        n_columns=len(columns),
        columns=columns,
        class_counts=class_counts,
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, *, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise DatasetNotFound(f"no dataset with id {dataset_id!r}")
    return dataset


def list_datasets(session: Session, *, limit: int = 100, offset: int = 0) -> Sequence[Dataset]:
    return session.scalars(
        select(Dataset).order_by(Dataset.created_at.desc()).limit(limit).offset(offset)
    ).all()
