"""services/api/routes/models.py over HTTP: models, their descriptions and tags, and
versions compared metric by metric."""

from __future__ import annotations

from statistics import fmean, pstdev
from typing import Any

import pytest
from fastapi.testclient import TestClient


def test_descriptions_and_tags(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, _) = model["name"], model["versions"]
    assert (
        client.patch(f"/models/{name}", json={"description": "cancer"}).json()["description"]
        == "cancer"
    )
    assert client.put(f"/models/{name}/tags/team", json={"value": "ml"}).json() == {"team": "ml"}
    assert client.put(f"/models/{name}/tags/team", json={"value": "ops"}).json() == {"team": "ops"}
    got = client.get(f"/models/{name}").json()
    assert (got["description"], got["tags"]) == ("cancer", {"team": "ops"})
    assert client.delete(f"/models/{name}/tags/team").json() == {}
    assert client.delete(f"/models/{name}/tags/team").status_code == 404
    assert client.patch(f"/models/{name}", json={"description": None}).json()["description"] is None

    client.put(f"/models/{name}/versions/{v1}/tags/stage", json={"value": "candidate"})
    client.put(f"/models/{name}/versions/{v2}/tags/stage", json={"value": "approved"})
    client.put(f"/models/{name}/versions/{v2}/tags/owner", json={"value": "ana"})
    desc = client.patch(f"/models/{name}/versions/{v2}", json={"description": "wider"}).json()
    assert desc["description"] == "wider"
    assert desc["tags"] == {"owner": "ana", "stage": "approved"}
    bad = client.put(f"/models/{name}/versions/{v2}/tags/a:b", json={"value": "x"})
    assert bad.status_code == 422
    assert "tag key 'a:b' is not valid" in bad.json()["detail"]

    def listed(**params: Any) -> list[int]:
        resp = client.get(f"/models/{name}/versions", params=params)
        assert resp.status_code == 200, resp.text
        return [v["version"] for v in resp.json()]

    assert listed(tag="stage:approved") == [v2]
    assert listed(tag="stage") == [v1, v2]
    assert listed(tag=["stage", "owner:ana"]) == [v2]
    assert listed(tag="stage:nope") == []
    client.delete(f"/models/{name}/versions/{v2}/tags/stage")
    assert listed(tag="stage") == [v1]


def test_compare_against_the_stored_metrics(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    resp = client.get(f"/models/{name}/compare", params={"versions": f"{v2},{v1},{v3}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["baseline"] == v2
    assert set(body["metrics"]) == {"f1", "accuracy"}
    f1 = {row["version"]: row for row in body["metrics"]["f1"]}
    for index, version in enumerate((v1, v2, v3)):
        folds = [f for f, _ in model["folds"][index]]
        assert f1[version]["folds"] == pytest.approx(folds)
        assert f1[version]["mean"] == pytest.approx(fmean(folds))
        assert f1[version]["std"] == pytest.approx(pstdev(folds))
        base = fmean([f for f, _ in model["folds"][1]])
        assert f1[version]["diff_from_baseline"] == pytest.approx(fmean(folds) - base)
    acc = {row["version"]: row for row in body["metrics"]["accuracy"]}
    assert acc[v2]["mean"] is None  # v2 stored no accuracy summary
    assert acc[v1]["diff_from_baseline"] is None
    assert acc[v2]["folds"] == pytest.approx([a for _, a in model["folds"][1]])


@pytest.mark.parametrize(
    ("versions", "status"), [("1", 422), ("1,1", 422), ("a,b", 422), ("1,99", 404)]
)
def test_compare_refusals(
    client: TestClient, model: dict[str, Any], versions: str, status: int
) -> None:
    first = model["versions"][0]
    versions = versions.replace("1", str(first)) if versions != "1,99" else f"{first},99"
    resp = client.get(f"/models/{model['name']}/compare", params={"versions": versions})
    assert resp.status_code == status, resp.text
