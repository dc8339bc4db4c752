"""registry/datasets.py: datasets found by content hash and target."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tests.factories import make_dataset


def test_dataset_is_found_by_hash_and_target(session: Session) -> None:
    from registry.datasets import find_dataset

    ds = make_dataset(session)
    assert find_dataset(session, sha256=ds.sha256, target="y") is ds
    assert find_dataset(session, sha256=ds.sha256, target="other") is None
