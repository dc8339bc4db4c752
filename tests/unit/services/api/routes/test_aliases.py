"""services/api/routes/aliases.py over HTTP: point, move, roll back and delete aliases;
every change in the history; refusals with a problem body."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from registry import predictions
from registry.db import make_engine
from tests.factories import SPEC, bearer, make_dataset, make_job, make_version


def test_alias_lifecycle_over_http(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    put = client.put(
        f"/models/{name}/aliases/production",
        json={"version": v1, "reason": "first release"},
        headers=bearer(client.app, "ana", "admin"),
    )
    assert put.status_code == 200, put.text
    assert put.json()["from_version"] is None
    assert put.json()["actor"] == "ana"
    moved = client.put(f"/models/{name}/aliases/production", json={"version": v2}).json()
    assert (moved["from_version"], moved["to_version"]) == (v1, v2)
    assert client.get(f"/models/{name}/versions/{v2}").json()["aliases"] == ["production"]
    assert client.get(f"/models/{name}/versions/{v1}").json()["aliases"] == []
    assert client.get(f"/models/{name}").json()["aliases"] == {"production": v2}
    back = client.post(
        f"/models/{name}/aliases/production/rollback",
        json={"to": "previous"},
        headers=bearer(client.app, "ops", "admin"),
    ).json()
    assert (back["from_version"], back["to_version"], back["actor"]) == (v2, v1, "ops")
    assert client.get(f"/models/{name}/aliases/production").json()["version"] == v1
    client.put(f"/models/{name}/aliases/staging", json={"version": v3})
    listed = client.get(f"/models/{name}/aliases").json()
    assert [(a["alias"], a["version"]) for a in listed] == [("production", v1), ("staging", v3)]
    deleted = client.delete(f"/models/{name}/aliases/staging", params={"reason": "done"})
    assert deleted.json()["to_version"] is None
    history = client.get(f"/models/{name}/aliases/history").json()
    assert [(h["alias"], h["from_version"], h["to_version"]) for h in history] == [
        ("staging", v3, None),
        ("staging", None, v3),
        ("production", v2, v1),
        ("production", v1, v2),
        ("production", None, v1),
    ]
    only = client.get(f"/models/{name}/aliases/history", params={"alias": "production"}).json()
    assert len(only) == 3


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("put", "aliases/production", {"version": 99}, 404, "has no version 99"),
        ("put", "aliases/Prod!", {"version": 1}, 422, "is not valid"),
        ("put", "aliases/latest", {"version": 1}, 422, "reserved"),
        ("put", "aliases/production", {"version": "x"}, 422, "version"),
        ("put", "aliases/production", {"version": 1, "extra": 1}, 422, "extra"),
        ("delete", "aliases/nope", None, 404, "has no alias 'nope'"),
        ("post", "aliases/nope/rollback", {"to": "previous"}, 404, "has no alias 'nope'"),
        ("post", "aliases/production/rollback", {"to": "prev"}, 422, "to"),
        ("get", "aliases/nope", None, 404, "has no alias 'nope'"),
    ],
)
def test_alias_refusals(
    client: TestClient,
    model: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    status: int,
    needle: str,
) -> None:
    url = f"/models/{model['name']}/{path}"
    resp = client.request(method.upper(), url, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.text
    assert client.get(f"/models/{model['name']}/aliases/history").json() == []


def test_rollback_with_no_previous_is_409(client: TestClient, model: dict[str, Any]) -> None:
    name, v1 = model["name"], model["versions"][0]
    client.put(f"/models/{name}/aliases/production", json={"version": v1})
    resp = client.post(f"/models/{name}/aliases/production/rollback", json={})
    assert resp.status_code == 409
    assert "no previous version" in resp.json()["detail"]


def test_a_gated_promotion_moves_only_on_evidence_from_the_same_folds(
    client: TestClient, model: dict[str, Any]
) -> None:
    # v1's folds score f1 0.80, 0.90, 0.70; v2's 0.95, 0.93, 0.94 (same dataset, same
    # fold settings); v3 was trained on another dataset.
    name = model["name"]
    url = f"/models/{name}/aliases/production"
    assert client.put(url, json={"version": 1}).status_code == 200

    strict = client.put(url, json={"version": 2, "gate": {"metric": "f1", "alpha": 0.05}})
    assert strict.status_code == 409, strict.text
    problem = strict.json()
    assert problem["code"] == "gate_refused"
    for figure in ("f1", "v2 mean 0.9400", "v1 mean 0.8000", "difference +0.1400", "p = "):
        assert figure in problem["detail"], figure
    # The same figures as numbers, for a client to read rather than parse.
    figures = problem["figures"]
    assert (figures["metric"], figures["passed"], figures["folds"]) == ("f1", False, 3)
    assert (figures["candidate"], figures["current"]) == (
        {"version": 2, "mean": pytest.approx(0.94)},
        {"version": 1, "mean": pytest.approx(0.80)},
    )
    assert figures["difference"] == pytest.approx(0.14)
    assert 0.05 <= figures["p_value"] < 0.25
    assert client.get(url).json()["version"] == 1

    lenient = client.put(url, json={"version": 2, "gate": {"metric": "f1", "alpha": 0.25}})
    assert lenient.status_code == 200, lenient.text
    gate = lenient.json()["gate"]
    assert gate["passed"] is True
    assert (gate["candidate"], gate["current"]) == (
        {"version": 2, "mean": pytest.approx(0.94)},
        {"version": 1, "mean": pytest.approx(0.80)},
    )
    assert gate["difference"] == pytest.approx(0.14)
    assert 0.05 <= gate["p_value"] < 0.25
    history = client.get(f"/models/{name}/aliases/history", params={"alias": "production"})
    assert history.json()[0]["gate"] == gate

    # Back to v1 only if it is not worse by more than 0.5 (a non-inferiority margin).
    margin = {"metric": "f1", "min_delta": -0.5}
    assert client.put(url, json={"version": 1, "gate": margin}).status_code == 200

    other = client.put(url, json={"version": 3, "gate": {"metric": "f1"}})
    assert other.status_code == 409
    assert other.json()["code"] == "not_comparable"
    assert "the dataset" in other.json()["detail"]
    unknown = client.put(url, json={"version": 2, "gate": {"metric": "nope"}})
    assert unknown.status_code == 422
    assert "expected one of ['accuracy', 'f1']" in unknown.json()["detail"]
    assert client.get(url).json()["version"] == 1


def test_a_gate_without_shared_folds_compares_the_same_held_out_rows(
    client: TestClient, db_url: str
) -> None:
    # Two versions trained without cross-validation (too few rows to fold, say) that held
    # out the same test rows: the gate compares them row by row, and records how.
    store = client.app.state.store  # type: ignore[attr-defined]
    rng = np.random.default_rng(5)
    rows, y = np.arange(200), rng.integers(0, 2, 200)
    name = f"rows-{uuid.uuid4().hex[:8]}"
    engine = make_engine(db_url)
    with Session(engine) as s:
        dataset = make_dataset(s)
        for right in (0.6, 0.95):
            p = np.where(rng.uniform(size=200) < right, y, 1 - y) * 0.8 + 0.1
            make_version(
                s,
                job=make_job(s, model_name=name, dataset_id=dataset.id),
                spec={**SPEC, "cross_validation": False, "test_split": 0.3},
                predictions_sha256=store.put(predictions.encode(rows, y, p.reshape(-1, 1))),
            )
        s.commit()
    engine.dispose()
    url = f"/models/{name}/aliases/production"
    assert client.put(url, json={"version": 1}).status_code == 200

    moved = client.put(url, json={"version": 2, "gate": {"metric": "accuracy"}})

    assert moved.status_code == 200, moved.text
    gate = moved.json()["gate"]
    assert gate["rows"] == 200
    assert "held-out rows" in gate["test"]
    assert gate["difference"] > 0.25
    assert gate["p_value"] < 0.001
    back = client.put(url, json={"version": 1, "gate": {"metric": "accuracy"}})
    assert back.status_code == 409
    assert back.json()["code"] == "gate_refused"
