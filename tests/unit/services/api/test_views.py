"""services/api/views.py and registry/views.py: a page of versions, jobs or models costs a
fixed number of queries, however many rows it shows (on real SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from registry import aliases, jobs, tags
from registry.db import make_engine
from services.api.reads import Reads
from tests.factories import make_job, make_version

MAX_QUERIES = 10


def _populate(db_url: str, n: int) -> str:
    """A model with n versions, each with two tags, three folds and its job's events, every
    other one aliased and retrained from the one before: everything a view shows."""
    name = f"views-{n}-{uuid.uuid4().hex[:6]}"
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as s:
        parent = None
        for i in range(n):
            job = make_job(s, model_name=name)
            jobs.claim_job(s, job_id=job.id, worker="w:1")
            for fold in (1, 2, 3):
                jobs.record_fold(
                    s,
                    job_id=job.id,
                    fold=fold,
                    n_train=6,
                    n_val=3,
                    metrics={"f1": 0.5},
                    history={"loss": [0.5]},
                )
            mv = make_version(s, job=job, retrained_from_id=parent)
            for key in ("stage", "owner"):
                tags.set_version_tag(s, model_name=name, version=mv.version, key=key, value="x")
            if i % 2:
                aliases.set_alias(s, model_name=name, alias=f"a{i}", version=mv.version)
            parent = mv.id
        tags.set_model_tag(s, model_name=name, key="team", value="ml")
        s.commit()
    engine.dispose()
    return name


@pytest.fixture
def count_queries(client: TestClient) -> Iterator[Callable[[str], tuple[int, Any]]]:
    """Statements of one request, on the routes' engine and on the polled reads' (each read
    afresh: services/api/reads.py); not the key ring's, which reloads in the background."""
    state = client.app.state  # type: ignore[attr-defined]
    reads: Reads = state.reads
    engines: list[Engine] = [state.sessionmaker.kw["bind"]]
    if reads.engine is not None:
        engines.append(reads.engine.sync_engine)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_key" not in statement:
            statements.append(statement)

    def get(path: str) -> tuple[int, Any]:
        reads.clear()
        statements.clear()
        resp = client.get(path)
        assert resp.status_code == 200, resp.text
        return len(statements), resp.json()

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield get
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


def _populate_models(db_url: str, n: int) -> str:
    """n more models, each with two versions, a tag and an alias."""
    for i in range(n):
        name = _populate(db_url, 2)
        engine = make_engine(db_url)
        with Session(engine) as s:
            tags.set_model_tag(s, model_name=name, key="i", value=str(i))
            s.commit()
        engine.dispose()
    return name


@pytest.mark.parametrize(
    ("path", "populate", "rows"),
    [
        ("/models/{name}/versions", _populate, lambda body: body),
        ("/jobs?limit={n}", _populate, lambda body: body["items"]),
        ("/models?limit=1000", _populate_models, lambda body: body["items"]),
    ],
    ids=["versions", "jobs", "models"],
)
def test_a_page_costs_the_same_queries_for_5_rows_as_for_50(
    client: TestClient,
    db_url: str,
    count_queries: Callable[[str], tuple[int, Any]],
    path: str,
    populate: Callable[[str, int], str],
    rows: Callable[[Any], list[Any]],
) -> None:
    counted = {}
    for n in (5, 50):
        name = populate(db_url, n)
        queries, body = count_queries(path.format(name=name, n=n))
        assert len(rows(body)) >= n
        counted[n] = queries
    assert counted[5] == counted[50], counted
    assert counted[50] <= MAX_QUERIES, counted


def test_a_version_view_shows_what_its_rows_hold(client: TestClient, db_url: str) -> None:
    name = _populate(db_url, 3)
    versions = client.get(f"/models/{name}/versions").json()
    second = versions[1]
    assert second["tags"] == {"owner": "x", "stage": "x"}
    assert second["aliases"] == ["a1"]
    assert [f["fold"] for f in second["folds"]] == [1, 2, 3]
    assert second["retrained_from"] == {"model_name": name, "version": versions[0]["version"]}
    model = client.get(f"/models/{name}").json()
    assert model["aliases"] == {"a1": versions[1]["version"]}
    assert model["tags"] == {"team": "ml"}
    assert model["versions"] == [v["version"] for v in versions]
    job = client.get(f"/jobs/{second['job_id']}").json()
    assert job["model_version"] == second["version"]
    assert [e["state"] for e in job["events"]] == ["queued", "running"]
    assert len(job["folds"]) == 3
