"""services/api/quotas.py: a spec larger than the limits is a 422 naming the limit; a
key past its submission rate or its active jobs gets a 429 with Retry-After; another key
is not held back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.migrate import upgrade
from services.api.app import create_app
from tests.conftest import api_settings
from tests.factories import bearer, mlp

BODY = {"model_name": "q", "dataset": "sklearn:breast_cancer"}


def api(tmp_path: Path, **settings: object) -> TestClient:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    return TestClient(create_app(api_settings(tmp_path, url, kiln_auth="required", **settings)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api(tmp_path, quota_submissions="3/minute", quota_active_jobs=2) as c:
        yield c


def test_a_huge_model_is_refused_with_the_limit_named(client: TestClient) -> None:
    huge = mlp(*[65536] * 62, epochs=1)  # about 270 billion parameters
    refused = client.post(
        "/jobs", json={**BODY, "spec": huge}, headers=bearer(client.app, "a", "train")
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "spec_over_limit"
    assert "SPEC_MAX_PARAMETERS" in refused.json()["detail"]
    assert "parameters" in refused.json()["detail"]


def test_endless_training_is_refused_with_the_limit_named(client: TestClient) -> None:
    endless = mlp(8, epochs=10000, batch_size=1, k_folds=50)
    refused = client.post(
        "/jobs", json={**BODY, "spec": endless}, headers=bearer(client.app, "a", "train")
    )
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "10000 epochs × 569 rows × 51 fits" in detail
    assert "SPEC_MAX_EPOCH_ROWS" in detail


def test_a_key_past_its_active_jobs_gets_429_and_another_key_does_not(
    client: TestClient,
) -> None:
    ana = bearer(client.app, "ana", "train")
    spec = mlp(4, epochs=2, k_folds=3)
    for _ in range(2):
        assert client.post("/jobs", json={**BODY, "spec": spec}, headers=ana).status_code == 202
    third = client.post("/jobs", json={**BODY, "spec": spec}, headers=ana)
    assert third.status_code == 429
    assert third.json()["code"] == "too_many_active_jobs"
    assert "QUOTA_ACTIVE_JOBS=2" in third.json()["detail"]
    assert int(third.headers["retry-after"]) >= 1
    bo = bearer(client.app, "bo", "train")
    assert client.post("/jobs", json={**BODY, "spec": spec}, headers=bo).status_code == 202


def test_a_key_past_its_submission_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    with api(tmp_path, quota_submissions="2/minute", quota_active_jobs=0) as client:
        ana = bearer(client.app, "ana", "train")
        spec = mlp(4, epochs=2, k_folds=3)
        answers = [client.post("/jobs", json={**BODY, "spec": spec}, headers=ana) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[2].json()["code"] == "rate_limited"
        assert "2 per 1 minute" in answers[2].json()["detail"]
        assert 1 <= int(answers[2].headers["retry-after"]) <= 60
        # Uploads count too; another key has its own budget.
        upload = client.post(
            "/datasets",
            files={"file": ("t.csv", b"a,y\n1,0\n2,1\n")},
            data={"target": "y"},
            headers=ana,
        )
        assert upload.status_code == 429
        bo = bearer(client.app, "bo", "train")
        assert client.post("/jobs", json={**BODY, "spec": spec}, headers=bo).status_code == 202
