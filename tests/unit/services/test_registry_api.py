"""The registry lifecycle over HTTP (TestClient on the real app, real SQLite and
PostgreSQL): aliases, tags, descriptions, filters and ordering, archive, delete with
artifact clean-up, lineage, retrain and comparison."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry import jobs
from registry.artifacts import ArtifactStore
from registry.db import make_engine
from registry.models import ModelVersion, RegisteredModel
from tests.factories import make_dataset, make_job, make_version

FOLDS = {
    # version index → per-fold f1 and accuracy
    0: [(0.80, 0.85), (0.90, 0.88), (0.70, 0.82)],
    1: [(0.95, 0.93), (0.93, 0.91), (0.94, 0.92)],
    2: [(0.855, 0.90), (0.86, 0.90), (0.865, 0.90)],
}


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: list[float]) -> float:
    m = mean(xs)
    return float((sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5)


@pytest.fixture
def model(client: TestClient, db_url: str) -> dict[str, Any]:
    """A model with three committed versions, each with three folds of metrics and its own
    ONNX and Keras files in the app's artifact store."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    info: dict[str, Any] = {"name": name, "versions": [], "hashes": []}
    with Session(engine, expire_on_commit=False) as s:
        ds = make_dataset(s)
        other = make_dataset(s)
        info["dataset"], info["other_dataset"] = ds, other
        for i, folds in FOLDS.items():
            job = make_job(s, model_name=name, dataset_id=(other if i == 2 else ds).id)
            for k, (f1, acc) in enumerate(folds):
                jobs.record_fold(
                    s,
                    job_id=job.id,
                    fold=k,
                    n_train=6,
                    n_val=3,
                    metrics={"f1": f1, "accuracy": acc, "confusion_matrix": [[1, 0], [0, 2]]},
                    history={},
                )
            onnx = store.put(f"onnx {name} {i}".encode())
            keras = store.put(f"keras {name} {i}".encode())
            info["hashes"].append((onnx, keras))
            f1s, accs = [f for f, _ in folds], [a for _, a in folds]
            metrics = {"f1": {"mean": mean(f1s), "std": std(f1s)}}
            if i != 1:  # version 2 lacks accuracy: ordering by it puts v2 last
                metrics["accuracy"] = {"mean": mean(accs), "std": std(accs)}
            mv = make_version(
                s,
                job=job,
                metrics=metrics,
                onnx_sha256=onnx,
                keras_sha256=keras,
                library_versions={"kiln": "0.1.0", "tensorflow": "2.21.0"},
            )
            info["versions"].append(mv.version)
        s.commit()
    engine.dispose()
    return info


def test_alias_lifecycle_over_http(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    put = client.put(
        f"/models/{name}/aliases/production",
        json={"version": v1, "reason": "first release"},
        headers={"X-Kiln-Actor": "ana"},
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
        headers={"X-Kiln-Actor": "ops"},
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


def test_filters_and_order_by_metric(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]

    def listed(**params: Any) -> list[int]:
        resp = client.get(f"/models/{name}/versions", params=params)
        assert resp.status_code == 200, resp.text
        return [v["version"] for v in resp.json()]

    # mean f1: v1 0.80, v2 0.94, v3 0.86
    assert listed(order_by="f1.mean", desc=True) == [v2, v3, v1]
    assert listed(order_by="f1") == [v1, v3, v2]
    # std f1: v3 smallest, then v2, then v1
    assert listed(order_by="f1.std") == [v3, v2, v1]
    # v2 has no accuracy: last whatever the direction
    assert listed(order_by="accuracy.mean", desc=True) == [v3, v1, v2]
    assert listed(order_by="accuracy.mean") == [v1, v3, v2]
    assert listed(dataset=model["dataset"].id) == [v1, v2]
    assert listed(dataset=model["other_dataset"].sha256) == [v3]
    client.put(f"/models/{name}/aliases/production", json={"version": v3})
    assert listed(alias="production") == [v3]
    assert listed(alias="staging") == []
    unknown = client.get(f"/models/{name}/versions", params={"order_by": "auc"})
    assert unknown.status_code == 422
    assert "no version of model" in unknown.json()["detail"]
    assert "['accuracy', 'f1']" in unknown.json()["detail"]
    stat = client.get(f"/models/{name}/versions", params={"order_by": "f1.median"})
    assert stat.status_code == 422
    assert "must be one of ['mean', 'std']" in stat.json()["detail"]


def test_archive_and_unarchive(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    archived = client.post(f"/models/{name}/versions/{v1}/archive").json()
    assert archived["archived_at"] is not None
    assert [v["version"] for v in client.get(f"/models/{name}/versions?archived=true").json()] == [
        v1
    ]
    assert [v["version"] for v in client.get(f"/models/{name}/versions?archived=false").json()] == [
        v2,
        v3,
    ]
    # Kept, still readable by number, files still there.
    assert client.get(f"/models/{name}/versions/{v1}/artifacts/onnx").status_code == 200
    assert client.post(f"/models/{name}/versions/{v1}/unarchive").json()["archived_at"] is None


def test_an_archived_newest_version_is_not_the_latest(
    client: TestClient, model: dict[str, Any]
) -> None:
    name, (_, v2, v3) = model["name"], model["versions"]
    assert client.get(f"/models/{name}").json()["latest_version"] == v3
    client.post(f"/models/{name}/versions/{v3}/archive").raise_for_status()
    read = client.get(f"/models/{name}").json()
    assert read["latest_version"] == v2
    assert v3 in read["versions"]
    client.post(f"/models/{name}/versions/{v3}/unarchive").raise_for_status()
    assert client.get(f"/models/{name}").json()["latest_version"] == v3


def test_delete_version_and_its_unshared_artifacts(
    client: TestClient, model: dict[str, Any], db_url: str
) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    client.put(f"/models/{name}/aliases/production", json={"version": v1})
    refused = client.delete(f"/models/{name}/versions/{v1}")
    assert refused.status_code == 409
    assert "alias(es) ['production'] point at it" in refused.json()["detail"]
    assert client.get(f"/models/{name}/versions/{v1}").status_code == 200

    # v3 shares v2's ONNX file: deleting v2 keeps that file and removes v2's Keras file.
    onnx2, keras2 = model["hashes"][1]
    engine = make_engine(db_url)
    with engine.begin() as conn:
        model_id = conn.scalar(select(RegisteredModel.id).where(RegisteredModel.name == name))
        conn.execute(
            update(ModelVersion)
            .where(ModelVersion.registered_model_id == model_id, ModelVersion.version == v3)
            .values(onnx_sha256=onnx2)
        )
    engine.dispose()
    client.put(f"/models/{name}/versions/{v2}/tags/x", json={"value": "y"})
    resp = client.delete(f"/models/{name}/versions/{v2}")
    assert resp.status_code == 204, resp.text
    assert client.get(f"/models/{name}/versions/{v2}").status_code == 404
    assert [v["version"] for v in client.get(f"/models/{name}/versions").json()] == [v1, v3]
    assert store.exists(onnx2)
    assert not store.exists(keras2)
    assert client.get(f"/models/{name}/versions/{v3}/artifacts/onnx").status_code == 200
    # v1's files were not touched.
    assert all(store.exists(h) for h in model["hashes"][0])


def test_lineage_and_retrain(client: TestClient, model: dict[str, Any]) -> None:
    name, v1 = model["name"], model["versions"][0]
    lineage = client.get(f"/models/{name}/versions/{v1}/lineage").json()
    ds = model["dataset"]
    assert lineage["dataset"]["id"] == ds.id
    assert lineage["dataset"]["sha256"] == ds.sha256
    assert lineage["dataset"]["shape"] == [ds.n_rows, ds.n_columns - 1]
    assert lineage["seed"] == lineage["spec"]["seed"] == 0
    assert lineage["library_versions"]["kiln"] == "0.1.0"
    assert lineage["device"] == "CPU"
    assert lineage["retrained_from"] is None
    assert lineage["job"]["id"] == client.get(f"/models/{name}/versions/{v1}").json()["job_id"]

    resp = client.post(f"/models/{name}/versions/{v1}/retrain", json={})
    assert resp.status_code == 202, resp.text
    job = client.get(resp.headers["location"]).json()
    assert job["state"] == "queued"
    assert job["model_name"] == name
    assert job["dataset_id"] == ds.id
    assert job["spec"] == lineage["spec"]

    other = client.post(
        f"/models/{name}/versions/{v1}/retrain",
        json={"dataset": "sklearn:iris", "model_name": f"{name}-iris"},
    )
    # The binary spec does not fit iris's three classes: refused at the door.
    assert other.status_code == 422
    assert "needs exactly 2 classes in the target; it has 3" in other.json()["detail"]


def test_retrained_from_flows_from_job_to_version(
    client: TestClient, model: dict[str, Any], db_url: str
) -> None:
    name, v1 = model["name"], model["versions"][0]
    job_id = client.post(f"/models/{name}/versions/{v1}/retrain").json()["id"]
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.get_job(s, job_id=job_id)
        assert job.retrained_from_id is not None
        # What the worker does on success: register with the job's retrained_from.
        mv = make_version(s, job=job, retrained_from_id=job.retrained_from_id)
        s.commit()
        new = mv.version
    engine.dispose()
    assert client.get(f"/models/{name}/versions/{new}").json()["retrained_from"] == {
        "model_name": name,
        "version": v1,
    }
    lineage = client.get(f"/models/{name}/versions/{new}/lineage").json()
    assert lineage["retrained_from"] == {"model_name": name, "version": v1}


def test_compare_against_the_stored_metrics(client: TestClient, model: dict[str, Any]) -> None:
    name, (v1, v2, v3) = model["name"], model["versions"]
    resp = client.get(f"/models/{name}/compare", params={"versions": f"{v2},{v1},{v3}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["baseline"] == v2
    assert set(body["metrics"]) == {"f1", "accuracy"}
    f1 = {row["version"]: row for row in body["metrics"]["f1"]}
    for index, version in enumerate((v1, v2, v3)):
        folds = [f for f, _ in FOLDS[index]]
        assert f1[version]["folds"] == pytest.approx(folds)
        assert f1[version]["mean"] == pytest.approx(mean(folds))
        assert f1[version]["std"] == pytest.approx(std(folds))
        base = mean([f for f, _ in FOLDS[1]])
        assert f1[version]["diff_from_baseline"] == pytest.approx(mean(folds) - base)
    acc = {row["version"]: row for row in body["metrics"]["accuracy"]}
    assert acc[v2]["mean"] is None  # v2 stored no accuracy summary
    assert acc[v1]["diff_from_baseline"] is None
    assert acc[v2]["folds"] == pytest.approx([a for _, a in FOLDS[1]])


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
