"""services/api/routes/versions.py over HTTP: find, describe, tag, archive and delete
versions; lineage, retrain and the ONNX download."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry import jobs
from registry.artifacts import ArtifactStore
from registry.db import make_engine
from registry.models import ModelVersion, RegisteredModel
from services.api.sweeper import sweep_orphans
from tests.factories import make_version


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
    # The files go with the sweeper, once the grace period is over; until then they stay.
    sm = client.app.state.sessionmaker  # type: ignore[attr-defined]
    assert keras2 not in sweep_orphans(sm, store, grace_s=3600)
    assert store.exists(keras2)
    assert keras2 in sweep_orphans(sm, store, grace_s=0)
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


def test_a_version_says_what_its_metrics_were_scored_on(
    client: TestClient, model: dict[str, Any], db_url: str
) -> None:
    name = model["name"]
    folded = client.get(f"/models/{name}/versions/1").json()
    assert folded["metrics_on"] == "folds"
    assert folded["folds"]
    engine = make_engine(db_url)
    with Session(engine) as s:
        spec = {**s.scalars(select(ModelVersion.spec)).first(), "cross_validation": False}
        mv = make_version(s, model_name=name, spec=spec)
        s.commit()
        number = mv.version
    engine.dispose()
    unfolded = client.get(f"/models/{name}/versions/{number}").json()
    assert unfolded["metrics_on"] == "training_rows"
    assert unfolded["folds"] == []
