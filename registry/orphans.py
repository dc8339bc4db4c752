"""Artifact files that nothing refers to any more, removed later by the sweeper.

Deleting a version only marks its files (an `orphan_artifact` row, in the delete's own
transaction); the sweeper removes a marked file once the mark is older than a grace
period and nothing refers to the hash. A job that produces the same bytes meanwhile must
not lose them, so every writer of a referencing row stores its bytes with
`put_referenced`, inside the transaction that writes the row:

- it deletes the hash's mark first. A sweep of the same hash deletes the mark first too,
  and keeps that row locked (PostgreSQL) or the database's write lock (SQLite) until the
  file is gone and it commits. So the writer either takes the mark away before the sweep
  sees it, or waits for the sweep to finish and then writes the file anew;
- a mark made while the writer's transaction is still open (another version with the
  same bytes deleted at that moment) is younger than the grace period, so by the time a
  sweep may act on it the writer's row is committed, and the sweep finds the reference.

The grace period must therefore be longer than any one writing transaction: a put of the
largest artifact and a few statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.artifacts import ArtifactStore, sha256_hex
from registry.db import utcnow
from registry.models import Dataset, ModelVersion, OrphanArtifact


def put_referenced(
    session: Session, store: ArtifactStore, data: bytes, *, sha256: str | None = None
) -> str:
    """Store ``data`` for a row this transaction is about to write; return its sha256
    (``sha256``: the caller hashed it already)."""
    digest = sha256 or sha256_hex(data)
    session.execute(delete(OrphanArtifact).where(OrphanArtifact.sha256 == digest))
    store.put(data)
    return digest


def referenced(session: Session, hashes: Iterable[str]) -> set[str]:
    """The hashes a version (ONNX, Keras, report, predictions or profile file) or a dataset
    refers to."""
    wanted = set(hashes)
    if not wanted:
        return set()
    used: set[str] = set()
    for column in (
        ModelVersion.onnx_sha256,
        ModelVersion.keras_sha256,
        ModelVersion.report_sha256,
        ModelVersion.predictions_sha256,
        ModelVersion.profile_sha256,
        Dataset.sha256,
    ):
        used |= {h for h in session.scalars(select(column).where(column.in_(wanted))) if h}
    return used


def mark(session: Session, hashes: Iterable[str]) -> list[str]:
    """Mark the hashes nothing refers to any more; return them."""
    wanted = set(hashes)
    orphans = sorted(wanted - referenced(session, wanted))
    for digest in orphans:
        if session.get(OrphanArtifact, digest) is not None:
            continue
        try:
            with session.begin_nested():
                session.add(OrphanArtifact(sha256=digest))
        except IntegrityError:
            pass  # marked by another delete at the same moment: one mark is enough
    return orphans


def due(session: Session, *, grace: timedelta, limit: int = 100) -> Sequence[str]:
    """Marked hashes older than ``grace``, oldest first."""
    return session.scalars(
        select(OrphanArtifact.sha256)
        .where(OrphanArtifact.orphaned_at <= utcnow() - grace)
        .order_by(OrphanArtifact.orphaned_at)
        .limit(limit)
    ).all()


def take(session: Session, sha256: str, *, grace: timedelta) -> bool:
    """Remove the hash's mark; True when its file may go now (the mark was there and due,
    and nothing refers to the hash). The caller deletes the file, then commits: until
    then the mark's removal holds off any writer of the same bytes."""
    result = session.execute(
        delete(OrphanArtifact)
        .where(OrphanArtifact.sha256 == sha256, OrphanArtifact.orphaned_at <= utcnow() - grace)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    return not referenced(session, [sha256])
