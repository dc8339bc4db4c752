"""registry/orphans.py: a deleted version's files are marked, and removed later only when
nothing refers to them; a writer of the same bytes never loses them to a sweep.

On real SQLite and PostgreSQL; the race test commits from two threads on their own
connections, as an API's sweeper and a worker do.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from registry import orphans, versions
from registry.artifacts import LocalArtifactStore, sha256_hex
from registry.models import OrphanArtifact
from tests.factories import make_dataset, make_version

NOW = timedelta(0)
LATER = timedelta(hours=1)


def _marks(session: Session) -> set[str]:
    return set(session.scalars(select(OrphanArtifact.sha256)))


def test_deleting_a_version_marks_only_the_files_nothing_else_uses(session: Session) -> None:
    shared, own, data = (uuid.uuid4().hex * 2 for _ in range(3))
    make_dataset(session, sha256=data)
    make_version(session, model_name="orph", onnx_sha256=shared, keras_sha256=data)
    doomed = make_version(session, model_name="orph", onnx_sha256=shared, keras_sha256=own)

    marked = versions.delete_version(session, model_name="orph", version=doomed.version)

    assert marked == [own]
    assert _marks(session) >= {own}
    assert not _marks(session) & {shared, data}


def test_a_mark_is_taken_when_due_and_the_hash_still_unreferenced(session: Session) -> None:
    lone, reused = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    orphans.mark(session, [lone, reused])
    session.flush()

    assert not orphans.take(session, lone, grace=LATER)  # not due yet
    assert lone in orphans.due(session, grace=NOW)
    assert lone not in orphans.due(session, grace=LATER)
    assert orphans.take(session, lone, grace=NOW)
    assert not orphans.take(session, lone, grace=NOW)  # taken once
    # A version that refers to the hash again, made after the mark: the file stays.
    make_version(session, model_name="orph2", onnx_sha256=reused)
    assert not orphans.take(session, reused, grace=NOW)


def test_storing_bytes_for_a_row_takes_their_mark_away(session: Session, tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    data = uuid.uuid4().bytes
    digest = sha256_hex(data)
    orphans.mark(session, [digest])

    assert orphans.put_referenced(session, store, data) == digest

    assert digest not in _marks(session)
    assert store.get(digest) == data


def test_a_writer_waits_for_a_sweep_of_the_same_bytes_and_writes_them_again(
    engine: Engine, tmp_path: Path
) -> None:
    store = LocalArtifactStore(tmp_path)
    data = uuid.uuid4().bytes
    digest = store.put(data)
    with Session(engine) as s:
        orphans.mark(s, [digest])
        s.commit()
    taken, times = threading.Event(), {}

    def sweep() -> None:
        with Session(engine) as s:
            assert orphans.take(s, digest, grace=NOW)
            taken.set()
            store.delete(digest)
            time.sleep(0.5)  # a slow store: the writer must wait for this commit
            times["sweep_committed"] = time.monotonic()
            s.commit()

    def write() -> None:
        taken.wait(10)
        with Session(engine) as s:
            orphans.put_referenced(s, store, data)
            times["writer_stored"] = time.monotonic()
            s.commit()

    threads = [threading.Thread(target=sweep), threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert times["writer_stored"] >= times["sweep_committed"]
    assert store.get(digest) == data  # written again after the sweep, hash-checked
    with Session(engine) as s:
        assert digest not in _marks(s)
