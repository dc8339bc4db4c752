"""services/api/auth.py: every operation of the API's OpenAPI document, three times:
401 without a key, 403 with a key that lacks its scope, success with the right one.
Plus what a key's owner and its model limit change, revocation, and cross-site browsers.

CASES lists every operation with the scope it needs and a request that succeeds; an
operation added without a line here fails `test_every_operation_is_in_the_table`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from registry import aliases
from registry.artifacts import make_artifact_store
from registry.db import utcnow
from registry.models import Search
from services.api.app import create_app
from services.settings import ApiSettings
from tests.conftest import api_settings
from tests.factories import SPEC, bearer, make_dataset, make_job, make_version
from training.profile import reference_profile

CSV = "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
ID = {"job": "", "dataset": "", "doomed_job": "", "search": "", "key": "0" * 32}

# operationId: (scope, method, path, request kwargs, success status). Run in this order:
# what deletes or cancels comes after what reads the same thing.
CASES: dict[str, tuple[str, str, str, dict[str, Any], int]] = {
    "datasets-list_datasets": ("read", "GET", "/datasets", {}, 200),
    "datasets-list_builtin": ("read", "GET", "/datasets/builtin", {}, 200),
    "datasets-get_dataset": ("read", "GET", "/datasets/{dataset}", {}, 200),
    "datasets-upload_dataset": (
        "train",
        "POST",
        "/datasets",
        {"files": {"file": ("t.csv", CSV.encode())}, "data": {"target": "y"}},
        201,
    ),
    "jobs-list_jobs": ("read", "GET", "/jobs", {}, 200),
    "jobs-get_job": ("read", "GET", "/jobs/{job}", {}, 200),
    "jobs-get_job_history": ("read", "GET", "/jobs/{job}/history", {}, 200),
    "jobs-submit_job": (
        "train",
        "POST",
        "/jobs",
        {"json": {"model_name": "m", "dataset": "{dataset}", "spec": SPEC}},
        202,
    ),
    "searches-submit_search": (
        "train",
        "POST",
        "/searches",
        {
            "json": {
                "model_name": "m",
                "dataset": "{dataset}",
                "spec": SPEC,
                "space": {"units": [2, 4]},
            }
        },
        202,
    ),
    "searches-list_searches": ("read", "GET", "/searches", {}, 200),
    "searches-get_search": ("read", "GET", "/searches/{search}", {}, 200),
    "models-list_models": ("read", "GET", "/models", {}, 200),
    "models-get_model": ("read", "GET", "/models/m", {}, 200),
    "models-update_model": ("train", "PATCH", "/models/m", {"json": {"description": "d"}}, 200),
    "models-set_model_tag": ("train", "PUT", "/models/m/tags/team", {"json": {"value": "x"}}, 200),
    "models-delete_model_tag": ("train", "DELETE", "/models/m/tags/team", {}, 200),
    "models-compare_versions": (
        "read",
        "GET",
        "/models/m/compare",
        {"params": {"versions": "1,2"}},
        200,
    ),
    "models-list_aliases": ("read", "GET", "/models/m/aliases", {}, 200),
    "models-alias_history": ("read", "GET", "/models/m/aliases/history", {}, 200),
    "models-get_alias": ("read", "GET", "/models/m/aliases/production", {}, 200),
    "models-set_alias": (
        "admin",
        "PUT",
        "/models/m/aliases/production",
        {"json": {"version": 2}},
        200,
    ),
    "models-rollback_alias": (
        "admin",
        "POST",
        "/models/m/aliases/production/rollback",
        {"json": {"to": "previous"}},
        200,
    ),
    "models-delete_alias": ("admin", "DELETE", "/models/m/aliases/production", {}, 200),
    "models-list_versions": ("read", "GET", "/models/m/versions", {}, 200),
    "models-get_version": ("read", "GET", "/models/m/versions/1", {}, 200),
    "models-update_version": (
        "train",
        "PATCH",
        "/models/m/versions/1",
        {"json": {"description": "d"}},
        200,
    ),
    "models-set_version_tag": (
        "train",
        "PUT",
        "/models/m/versions/1/tags/team",
        {"json": {"value": "x"}},
        200,
    ),
    "models-delete_version_tag": ("train", "DELETE", "/models/m/versions/1/tags/team", {}, 200),
    "models-archive_version": ("admin", "POST", "/models/m/versions/1/archive", {}, 200),
    "models-unarchive_version": ("admin", "POST", "/models/m/versions/1/unarchive", {}, 200),
    "models-get_lineage": ("read", "GET", "/models/m/versions/1/lineage", {}, 200),
    "models-retrain_version": ("train", "POST", "/models/m/versions/1/retrain", {}, 202),
    "models-download_onnx": ("read", "GET", "/models/m/versions/1/artifacts/onnx", {}, 200),
    "models-get_report": ("read", "GET", "/models/m/versions/1/report", {}, 200),
    "models-get_report_html": ("read", "GET", "/models/m/versions/1/report.html", {}, 200),
    "models-get_profile": ("read", "GET", "/models/m/versions/1/profile", {}, 200),
    "models-get_drift": (
        "read",
        "GET",
        "/models/m/versions/1/drift",
        {"params": {"dataset": "{dataset}"}},
        200,
    ),
    # Version 2 has no report yet.
    "models-request_report": ("train", "POST", "/models/m/versions/2/report", {}, 202),
    "models-delete_version": ("admin", "DELETE", "/models/m/versions/2", {}, 204),
    "jobs-cancel_job": ("train", "POST", "/jobs/{doomed_job}/cancel", {}, 200),
    "searches-cancel_search": ("train", "POST", "/searches/{search}/cancel", {}, 200),
    "keys-list_keys": ("admin", "GET", "/keys", {}, 200),
    "keys-create_key": (
        "admin",
        "POST",
        "/keys",
        {"json": {"owner": "bo", "scopes": ["read"]}},
        201,
    ),
    "keys-revoke_key": ("admin", "DELETE", "/keys/{key}", {}, 200),
}
# Read by probes and Prometheus, without a key (as the predictor's are).
PUBLIC = {"health-healthz", "ops-prometheus_metrics"}
# A key with every scope but the one needed (and admin, which holds them all).
LACKING = {
    "read": ("predict",),
    "train": ("read", "predict"),
    "admin": ("read", "predict", "train"),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("kiln-auth")
    url = f"sqlite:///{home / 'kiln.db'}"
    from registry.migrate import upgrade

    upgrade(url)
    settings = api_settings(home, url, kiln_auth="required")
    with TestClient(create_app(settings)) as client:
        with client.app.state.sessionmaker() as s:  # type: ignore[attr-defined]
            store = make_artifact_store(settings)
            onnx = store.put(b"onnx bytes")
            report = store.put(
                b'{"task":"binary","class_labels":["0","1"],"threshold":0.5,"sections":[]}'
            )
            # A real table (column a, target y), its profile, and a version trained on it.
            # (Not the bytes the upload case sends: those must be new to the registry.)
            values = np.arange(20, dtype=np.float64) + 0.5
            table = "a,y\n" + "".join(f"{v:g},{int(v) % 2}\n" for v in values)
            profile = store.put(
                json.dumps(
                    reference_profile(
                        values[:, None],
                        values % 2,
                        feature_names=["a"],
                        class_labels=[0, 1],
                        kind="table",
                    )
                ).encode()
            )
            dataset = make_dataset(
                s, n_rows=20, class_counts={"0": 10, "1": 10}, sha256=store.put(table.encode())
            )
            job = make_job(s, model_name="m", dataset_id=dataset.id, owner="trainer")
            make_version(
                s,
                job=job,
                onnx_sha256=onnx,
                report_sha256=report,
                profile_sha256=profile,
                signature={"kind": "table", "feature_names": ["a"], "inputs": [], "outputs": []},
            )
            make_version(s, model_name="m")
            aliases.set_alias(s, model_name="m", alias="production", version=1)
            doomed = make_job(s, model_name="m", dataset_id=dataset.id, owner="trainer")
            search = Search(
                model_name="m",
                dataset_id=dataset.id,
                spec=SPEC,
                space={"units": [2]},
                objective={"metric": "f1", "direction": "maximize"},
                budget={"trials": 1, "parallel": 1, "wall_s": 60},
                options={},
                owner="trainer",
                deadline_at=utcnow() + timedelta(minutes=1),
            )
            s.add(search)
            s.commit()
            ID.update(job=job.id, dataset=dataset.id, doomed_job=doomed.id, search=search.id)
        yield client


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        return value.format(**ID)
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    return value


def _send(api: TestClient, operation: str, headers: dict[str, str]) -> Any:
    _, method, path, kwargs, _ = CASES[operation]
    request = {k: (v if k == "files" else _fill(v)) for k, v in kwargs.items()}
    if "files" in request:  # a fresh stream for every send
        request["files"] = {k: (n, io.BytesIO(b)) for k, (n, b) in request["files"].items()}
    return api.request(method, _fill(path), headers=headers, **request)


def test_every_operation_is_in_the_table(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    documented = {
        op["operationId"]: op.get("security")
        for ops in doc["paths"].values()
        for op in ops.values()
    }
    assert set(documented) == set(CASES) | PUBLIC
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["apiKey"]["description"],
    }
    for operation, (scope, *_) in CASES.items():
        assert documented[operation] == [{"apiKey": [scope]}], operation


def test_every_operation_refuses_no_key_and_a_wrong_one(api: TestClient) -> None:
    unknown = {"Authorization": "Bearer kiln_not-a-key"}
    malformed = {"Authorization": "Basic YTpi"}
    refused = []
    for operation, (scope, *_) in CASES.items():
        lacking = bearer(api.app, f"lacks-{scope}", *LACKING[scope])
        for headers, status, code in (
            ({}, 401, "unauthenticated"),
            (unknown, 401, "unauthenticated"),
            (malformed, 401, "unauthenticated"),
            (lacking, 403, "scope_missing"),
        ):
            response = _send(api, operation, headers)
            got = (response.status_code, response.json().get("code"))
            if got != (status, code):
                refused.append((operation, headers, got))
    assert not refused, refused
    assert api.get("/healthz").status_code == 200


def test_every_operation_succeeds_with_its_scope(api: TestClient) -> None:
    failed = []
    for operation, (scope, *_, success) in CASES.items():
        headers = bearer(api.app, "trainer" if scope == "train" else f"has-{scope}", scope)
        if operation == "keys-revoke_key":
            ID["key"] = api.get("/keys", headers=headers).json()[-1]["id"]
        response = _send(api, operation, headers)
        if response.status_code != success:
            failed.append((operation, response.status_code, response.text[:300]))
    assert not failed, failed


def test_the_history_records_the_keys_owner_not_a_header(api: TestClient) -> None:
    admin = bearer(api.app, "ana", "admin")
    moved = api.put(
        "/models/m/aliases/staging",
        json={"version": 1},
        headers={**admin, "X-Kiln-Actor": "mallory"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["actor"] == "ana"


def test_a_job_is_cancelled_only_by_its_owner_or_an_admin(api: TestClient) -> None:
    with api.app.state.sessionmaker() as s:  # type: ignore[attr-defined]
        job = make_job(s, model_name="m", dataset_id=ID["dataset"], owner="trainer")
        s.commit()
    other = api.post(f"/jobs/{job.id}/cancel", headers=bearer(api.app, "eve", "train"))
    assert other.status_code == 403
    assert "submitted by 'trainer'" in other.json()["detail"]
    own = api.post(f"/jobs/{job.id}/cancel", headers=bearer(api.app, "trainer", "train"))
    assert own.status_code == 200
    assert own.json()["state"] == "cancelled"


def test_a_submitted_job_belongs_to_its_keys_owner(api: TestClient) -> None:
    headers = bearer(api.app, "zoe", "train")
    body = {"model_name": "m", "dataset": ID["dataset"], "spec": SPEC}
    job = api.post("/jobs", json=body, headers=headers).json()
    with api.app.state.sessionmaker() as s:  # type: ignore[attr-defined]
        from registry.models import TrainingJob

        assert s.get(TrainingJob, job["id"]).owner == "zoe"  # type: ignore[union-attr]


def test_a_key_limited_to_models_may_not_touch_others(api: TestClient) -> None:
    headers = bearer(api.app, "lim", "read", "train", models=["other"])
    refused = api.get("/models/m", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "model_not_allowed"
    assert api.get(f"/jobs/{ID['job']}", headers=headers).status_code == 403
    body = {"model_name": "m", "dataset": ID["dataset"], "spec": SPEC}
    assert api.post("/jobs", json=body, headers=headers).status_code == 403
    allowed = api.post("/jobs", json={**body, "model_name": "other"}, headers=headers)
    assert allowed.status_code == 202, allowed.text


def test_a_key_counts_at_once_where_it_was_made_and_a_revoked_one_is_refused(
    api: TestClient,
) -> None:
    admin = bearer(api.app, "root", "admin")
    made = api.post("/keys", json={"owner": "tmp", "scopes": ["read"]}, headers=admin).json()
    token = {"Authorization": f"Bearer {made['token']}"}
    assert api.get("/models", headers=token).status_code == 200
    listed = api.get("/keys", headers=admin).json()
    assert all("token" not in k for k in listed)
    assert made["prefix"] == made["token"][: len(made["prefix"])]
    api.delete(f"/keys/{made['id']}", headers=admin)
    again = api.get("/models", headers=token)
    assert again.status_code == 401
    assert "revoked" in again.json()["detail"]


@pytest.mark.parametrize(
    "browser",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_browser_request_changes_nothing(
    api: TestClient, browser: dict[str, str]
) -> None:
    admin = bearer(api.app, "ana", "admin")
    refused = api.post("/models/m/versions/1/archive", headers={**admin, **browser})
    assert refused.status_code == 403
    assert refused.json()["code"] == "cross_site_request"
    assert api.get("/models/m/versions/1", headers=admin).json()["archived_at"] is None
    # Reading is not a change, and the API's own origin may change things.
    assert api.get("/models/m", headers={**admin, **browser}).status_code == 200
    same = {**admin, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert api.post("/models/m/versions/1/unarchive", headers=same).status_code == 200


def test_an_open_kiln_lets_anonymous_requests_in_and_still_checks_keys(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, settings = own_api
    assert not settings.auth_required  # the embedded default
    assert client.get("/models").status_code == 200
    bad = client.get("/models", headers={"Authorization": "Bearer kiln_nope"})
    assert bad.status_code == 401
