"""The polled reads kept for API_READ_CACHE_S (services/api/reads.py): a client reads its
own writes at once, a worker's within the cache time, a key never sees through another
key's cached answer, and one answer read at once by many is read from the database once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from core.access import Scope
from registry import jobs
from registry.db import make_async_engine, make_engine, make_sessionmaker
from services.api.app import create_app
from services.api.reads import Reads
from services.api.schemas import Page
from services.api.sessions import SessionGate
from tests.conftest import api_settings
from tests.factories import bearer, make_job, make_version

TTL_S = 0.5


@pytest.fixture
def api(tmp_path: Path, own_db: str) -> Iterator[TestClient]:
    settings = api_settings(tmp_path, own_db, kiln_auth="required", api_read_cache_s=TTL_S)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def worker_sm(own_db: str) -> Iterator[sessionmaker[Session]]:
    """Sessions of another process's engine (a worker's): their commits are not the API's."""
    engine = make_engine(own_db)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_workers_write_is_seen_within_the_cache_time(
    api: TestClient, worker_sm: sessionmaker[Session]
) -> None:
    reader = bearer(api.app, "alice", Scope.READ)
    with worker_sm() as s:
        job = make_job(s, model_name="iris")
        jobs.mark_enqueued(s, job_id=job.id)
        s.commit()
    assert api.get(f"/jobs/{job.id}", headers=reader).json()["state"] == "queued"
    with worker_sm() as s:
        assert jobs.claim_job(s, job_id=job.id, worker="w@host") is not None
        s.commit()
    seen_at, start = None, time.monotonic()
    while seen_at is None and time.monotonic() - start < TTL_S + 2:
        if api.get(f"/jobs/{job.id}", headers=reader).json()["state"] == "running":
            seen_at = time.monotonic() - start
        time.sleep(0.05)
    assert seen_at is not None, "the claim was never seen"
    assert seen_at <= TTL_S + 0.5


def test_a_client_reads_its_own_writes_at_once(
    api: TestClient, worker_sm: sessionmaker[Session]
) -> None:
    with worker_sm() as s:
        make_version(s, model_name="iris")
        s.commit()
    writer = bearer(api.app, "alice", Scope.READ, Scope.TRAIN)
    assert api.get("/models/iris", headers=writer).json()["description"] is None
    assert api.get("/models", headers=writer).json()["items"][0]["description"] is None
    patched = api.patch("/models/iris", json={"description": "petals"}, headers=writer)
    assert patched.status_code == 200, patched.text
    assert api.get("/models/iris", headers=writer).json()["description"] == "petals"
    assert api.get("/models", headers=writer).json()["items"][0]["description"] == "petals"


def test_a_cached_answer_is_checked_against_every_key(
    api: TestClient, worker_sm: sessionmaker[Session]
) -> None:
    with worker_sm() as s:
        job = make_job(s, model_name="iris")
        make_version(s, model_name="iris")
        s.commit()
    everyone = bearer(api.app, "alice", Scope.READ)
    digits_only = bearer(api.app, "bob", Scope.READ, models=["digits"])
    assert api.get(f"/jobs/{job.id}", headers=everyone).status_code == 200
    assert api.get("/models/iris", headers=everyone).status_code == 200
    # The same answers are in the cache now; bob's key is for another model.
    for path in (f"/jobs/{job.id}", "/models/iris"):
        refused = api.get(path, headers=digits_only)
        assert refused.status_code == 403, refused.text
        assert "iris" in refused.json()["detail"]
    assert api.get(f"/jobs/{job.id}").status_code == 401


def test_links_follow_the_host_each_client_asked(
    api: TestClient, worker_sm: sessionmaker[Session]
) -> None:
    with worker_sm() as s:
        job = make_job(s)
        s.commit()
    reader = bearer(api.app, "alice", Scope.READ)
    for host in ("kiln.example", "kiln.internal:8000"):
        got = api.get(f"/jobs/{job.id}", headers={**reader, "Host": host}).json()
        assert got["links"]["self"] == f"http://{host}/jobs/{job.id}"


def test_a_missing_job_is_not_kept(api: TestClient, worker_sm: sessionmaker[Session]) -> None:
    reader = bearer(api.app, "alice", Scope.READ)
    with worker_sm() as s:
        job = make_job(s)
        s.commit()
        job_id = job.id
        s.delete(job)
        s.commit()
    assert api.get(f"/jobs/{job_id}", headers=reader).status_code == 404
    with worker_sm() as s:
        make_job(s, id=job_id)
        s.commit()
    assert api.get(f"/jobs/{job_id}", headers=reader).status_code == 200


def _request(path: str = "/models") -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "scheme": "http"}
    return Request({**scope, "query_string": b"", "headers": [], "server": ("kiln", 80)})


@pytest.mark.parametrize("threaded", [False, True], ids=["asyncio", "in-a-thread"])
@pytest.mark.parametrize("ttl_s", [1.0, 0.0])
def test_concurrent_reads_of_one_answer_load_it_once(
    own_db: str, ttl_s: float, threaded: bool
) -> None:
    engine = make_engine(own_db)
    sm = make_sessionmaker(engine)
    loads: list[int] = []

    def load(session: Session, _request: Request) -> Page[int]:
        loads.append(1)
        time.sleep(0.05)  # a read in flight while the others arrive
        return Page[int](items=[len(loads)], limit=1, offset=0)

    async def scenario() -> list[list[int]]:
        read_engine = None if threaded else make_async_engine(own_db)
        gate = SessionGate(sm, slots=4, timeout_s=5)
        reads = Reads(sm, ttl_s=ttl_s, engine=read_engine, gate=gate)

        async def burst() -> list[int]:
            answers = [reads.answer("page", _request(), (1,), load) for _ in range(20)]
            return sorted({json.loads(a.body)["items"][0] for a in await asyncio.gather(*answers)})

        seen = [await burst()]
        await asyncio.sleep(ttl_s * 0.6)  # in the second half of its time
        seen.append(await burst())  # still served, read again in the background
        await asyncio.sleep(0.2)
        seen.append(await burst())
        await asyncio.sleep(ttl_s + 0.1)  # past its time: the first request reads again;
        seen.append(await burst())  # the others get the last answer while it reads
        await asyncio.sleep(2 * ttl_s + 0.1)  # long past: every request waits for the read
        seen.append(await burst())
        if read_engine is not None:
            await read_engine.dispose()
        return seen

    seen = asyncio.run(scenario())
    engine.dispose()
    if ttl_s == 0:  # off: every request reads
        assert len(loads) == 100
        return
    assert seen == [[1], [1], [2], [2, 3], [4]]
    assert len(loads) == 4


def test_only_a_commit_that_wrote_empties_the_cache(
    api: TestClient, worker_sm: sessionmaker[Session]
) -> None:
    reader = bearer(api.app, "alice", Scope.READ)
    with worker_sm() as s:
        make_version(s, model_name="iris")
        s.commit()
    assert api.get("/models/iris", headers=reader).json()["description"] is None
    with worker_sm() as s:  # another process describes it
        s.execute(text("UPDATE registered_model SET description = 'petals'"))
        s.commit()
    api_sm: sessionmaker[Session] = api.app.state.sessionmaker  # type: ignore[attr-defined]
    with api_sm() as s:  # the sweeper finds nothing to do: reads, commits
        s.execute(text("SELECT 1"))
        s.commit()
    assert api.get("/models/iris", headers=reader).json()["description"] is None
    with api_sm() as s:  # this process writes
        make_job(s)
        s.commit()
    assert api.get("/models/iris", headers=reader).json()["description"] == "petals"
