"""GET/POST /models/{name}/versions/{v}/report: the evaluation report, as JSON and HTML."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer
from sqlalchemy.orm import Session

from registry.artifacts import ArtifactStore
from registry.db import make_engine
from registry.models import TrainingJob
from tests.factories import BINARY_MLP, make_version, mlp, model_spec
from training.profile import reference_profile
from training.report import Scored, evaluation_report

RNG = np.random.default_rng(3)


def _binary_report() -> dict[str, Any]:
    scored = []
    for fold in (1, 2, 3):
        y = RNG.integers(0, 2, 190)
        scored.append(Scored("fold", y, (0.4 * y + RNG.uniform(0, 0.6, 190)).reshape(-1, 1), fold))
    y = RNG.integers(0, 2, 114)
    scored.append(Scored("test", y, (0.4 * y + RNG.uniform(0, 0.6, 114)).reshape(-1, 1)))
    return evaluation_report(model_spec(BINARY_MLP), scored, class_labels=["benign", "malignant"])


def _multiclass_report() -> dict[str, Any]:
    y = RNG.integers(0, 3, 150)
    proba = RNG.dirichlet([1, 1, 1], 150) + np.eye(3)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    spec = model_spec(mlp(8, task="multiclass", classes=3))
    return evaluation_report(spec, [Scored("fold", y, proba, 1)], class_labels=["a", "b", "c"])


def _regression_report(n: int) -> dict[str, Any]:
    y = RNG.normal(size=n)
    spec = model_spec(mlp(8, task="regression"))
    return evaluation_report(
        spec, [Scored("training", y, (y + RNG.normal(0, 0.3, n)).reshape(-1, 1))], class_labels=None
    )


def _version(client: TestClient, db_url: str, report: dict[str, Any] | None) -> tuple[str, int]:
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    name = f"r-{uuid.uuid4().hex[:8]}"
    sha = None if report is None else store.put(json.dumps(report, allow_nan=False).encode())
    engine = make_engine(db_url)
    with Session(engine) as s:
        mv = make_version(s, model_name=name, report_sha256=sha)
        number = mv.version
        s.commit()
    engine.dispose()
    return name, number


def _self_contained(html: str) -> None:
    assert len(html.encode()) < 1_000_000
    assert "<svg" in html
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<script|<link|<img|@import|url\(", html)
    assert not re.search(r"(src|href)\s*=", html)


def test_a_versions_report_is_served_as_stored_with_its_links(
    client: TestClient, db_url: str
) -> None:
    report = _binary_report()
    name, v = _version(client, db_url, report)

    got = client.get(f"/models/{name}/versions/{v}/report")

    assert got.status_code == 200, got.text
    body = got.json()
    assert body["model_name"] == name
    assert body["version"] == v
    assert body["links"]["html"].endswith(f"/models/{name}/versions/{v}/report.html")
    assert {k: body[k] for k in report} == json.loads(json.dumps(report))
    version = client.get(f"/models/{name}/versions/{v}").json()
    assert version["artifacts"]["report"]["url"] == body["links"]["self"]


@pytest.mark.parametrize(
    "report",
    [_binary_report(), _multiclass_report(), _regression_report(200)],
    ids=["binary", "multiclass", "regression"],
)
def test_the_html_report_is_one_self_contained_file(
    client: TestClient, db_url: str, report: dict[str, Any]
) -> None:
    name, v = _version(client, db_url, report)

    got = client.get(f"/models/{name}/versions/{v}/report.html")

    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/html")
    assert f'filename="{name}-v{v}-report.html"' in got.headers["content-disposition"]
    _self_contained(got.text)
    assert f"{name} version {v}" in got.text
    for section in report["sections"]:
        assert f"{section['n_rows']} rows" in got.text
    if report["task"] == "binary":
        assert "At each threshold" in got.text
        assert "test rows" in got.text
        assert "fold 3" in got.text
        assert "ROC" in got.text
        assert "Calibration" in got.text
    if report["task"] == "regression":
        assert "training rows" in got.text
        assert "Error by decile" in got.text


def test_a_report_of_many_rows_stays_under_a_megabyte(client: TestClient, db_url: str) -> None:
    name, v = _version(client, db_url, _regression_report(100_000))

    html = client.get(f"/models/{name}/versions/{v}/report.html").text

    _self_contained(html)


def test_a_version_registered_before_reports_is_a_404_that_says_how_to_get_one(
    client: TestClient, db_url: str
) -> None:
    name, v = _version(client, db_url, None)

    missing = client.get(f"/models/{name}/versions/{v}/report")
    assert missing.status_code == 404
    assert missing.json()["code"] == "report_not_found"
    assert f"POST /models/{name}/versions/{v}/report" in missing.json()["detail"]
    assert client.get(f"/models/{name}/versions/{v}/report.html").status_code == 404
    assert "report" not in client.get(f"/models/{name}/versions/{v}").json()["artifacts"]

    queued = client.post(f"/models/{name}/versions/{v}/report")

    assert queued.status_code == 202, queued.text
    job = client.get(queued.headers["Location"]).json()
    assert job["kind"] == "report"
    assert job["model_name"] == name
    assert job["state"] == "queued"
    engine = make_engine(db_url)
    with Session(engine) as s:
        row = s.get(TrainingJob, job["id"])
        assert row is not None
        assert row.params == {"version": v}
    engine.dispose()


def test_asking_for_a_report_a_version_has_is_a_409(client: TestClient, db_url: str) -> None:
    name, v = _version(client, db_url, _binary_report())

    refused = client.post(f"/models/{name}/versions/{v}/report")

    assert refused.status_code == 409
    assert refused.json()["code"] == "report_exists"
    assert client.post(f"/models/{name}/versions/99/report").status_code == 404


def test_a_versions_reference_profile_is_served_and_a_missing_one_says_how_to_get_one(
    client: TestClient, db_url: str
) -> None:
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    X, y = RNG.normal(size=(120, 2)), RNG.integers(0, 2, 120)
    profile = reference_profile(X, y, feature_names=["a", "b"], class_labels=[0, 1], kind="table")
    name = f"p-{uuid.uuid4().hex[:8]}"
    engine = make_engine(db_url)
    with Session(engine) as s:
        make_version(s, model_name=name, profile_sha256=store.put(json.dumps(profile).encode()))
        make_version(s, model_name=name)
        s.commit()
    engine.dispose()

    got = client.get(f"/models/{name}/versions/1/profile")

    assert got.status_code == 200, got.text
    body = got.json()
    assert {k: body[k] for k in profile} == json.loads(json.dumps(profile))
    version = client.get(f"/models/{name}/versions/1").json()
    assert version["artifacts"]["profile"]["url"] == body["links"]["self"]
    missing = client.get(f"/models/{name}/versions/2/profile")
    assert missing.status_code == 404
    assert missing.json()["code"] == "profile_not_found"
    assert f"POST /models/{name}/versions/2/report" in missing.json()["detail"]


def test_a_datasets_drift_from_a_versions_training_rows(client: TestClient, db_url: str) -> None:
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    frame = load_breast_cancer(as_frame=True).frame
    names = [c for c in frame.columns if c != "target"][:4]
    train, later = frame.iloc[:350], frame.iloc[350:]
    profile = reference_profile(
        train[names].to_numpy(),
        train["target"].to_numpy(),
        feature_names=names,
        class_labels=[0, 1],
        kind="table",
    )
    name = f"d-{uuid.uuid4().hex[:8]}"
    engine = make_engine(db_url)
    with Session(engine) as s:
        make_version(
            s,
            model_name=name,
            profile_sha256=store.put(json.dumps(profile).encode()),
            signature={"kind": "table", "feature_names": names, "inputs": [], "outputs": []},
        )
        s.commit()
    engine.dispose()

    def upload(table: Any) -> str:
        files = {"file": ("rows.csv", table.to_csv(index=False).encode(), "text/csv")}
        resp = client.post("/datasets", files=files, data={"target": "target"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    url = f"/models/{name}/versions/1/drift"
    same = client.get(url, params={"dataset": upload(later)}).json()
    moved = later.assign(**{names[2]: later[names[2]] + 2 * train[names[2]].std()})
    shifted = client.get(url, params={"dataset": upload(moved)}).json()

    assert (same["n_rows"], same["test"]) == (219, "chi_squared")
    assert [f["name"] for f in same["features"]] == names
    assert same["drifted"] is False, same
    assert shifted["drifted"] is True
    assert shifted["drifted_features"] == [names[2]]
    (feature,) = [f for f in shifted["features"] if f["drifted"]]
    assert feature["p_value"] < feature["threshold"] == pytest.approx(0.01 / 4)
    lacking = client.get(url, params={"dataset": upload(later.drop(columns=[names[0]]))})
    assert lacking.status_code == 422
    assert f"lacks the version's feature columns ['{names[0]}']" in lacking.json()["detail"]
    assert client.get(url, params={"dataset": "nope"}).status_code == 404
