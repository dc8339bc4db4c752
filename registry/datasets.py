"""Datasets: uploaded or built-in tables and image arrays, stored by content hash."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db import get_or_raise
from registry.errors import DatasetNotFound
from registry.models import Dataset


def find_dataset(session: Session, *, sha256: str, target: str) -> Dataset | None:
    return session.scalars(
        select(Dataset).where(Dataset.sha256 == sha256, Dataset.target == target)
    ).first()


def add_dataset(session: Session, row: Dataset) -> Dataset:
    """Store ``row``, its column count taken from its columns."""
    row.n_columns = len(row.columns)
    session.add(row)
    session.flush()
    return row


def get_dataset(session: Session, *, dataset_id: str) -> Dataset:
    missing = DatasetNotFound(f"no dataset with id {dataset_id!r}")
    return get_or_raise(session, Dataset, dataset_id, missing)


def list_datasets(session: Session, *, limit: int = 100, offset: int = 0) -> Sequence[Dataset]:
    return session.scalars(
        select(Dataset).order_by(Dataset.created_at.desc()).limit(limit).offset(offset)
    ).all()
