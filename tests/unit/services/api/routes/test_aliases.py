"""services/api/routes/aliases.py over HTTP: point, move, roll back and delete aliases;
every change in the history; refusals with a problem body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import bearer


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
