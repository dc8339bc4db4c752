"""services/api/idempotency.py: a submission sent again with the same Idempotency-Key and
body gets the first answer (one job, one dataset); another body under the key is a 409;
a submission that failed can be sent again under its key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry.db import utcnow
from registry.models import IdempotencyRecord, TrainingJob
from services.api import idempotency
from services.settings import ApiSettings
from tests.factories import mlp

JOB = {
    "model_name": "idem",
    "dataset": "sklearn:breast_cancer",
    "spec": mlp(4, epochs=2, k_folds=3),
}


def jobs_of(client: TestClient, model: str) -> int:
    with client.app.state.sessionmaker() as s:  # type: ignore[attr-defined]
        return (
            s.scalar(
                select(func.count()).select_from(TrainingJob).where(TrainingJob.model_name == model)
            )
            or 0
        )


def test_the_same_key_and_body_answer_the_same_job_once(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    key = {"Idempotency-Key": "b3f1c2de-0001"}
    first = client.post("/jobs", json=JOB, headers=key)
    again = client.post("/jobs", json=JOB, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert jobs_of(client, "idem") == 1
    # Without a key, or with another, it is a new submission.
    assert client.post("/jobs", json=JOB).json()["id"] != first.json()["id"]
    other = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "b3f1c2de-0002"})
    assert other.json()["id"] != first.json()["id"]
    assert jobs_of(client, "idem") == 3


def test_the_same_key_with_another_body_is_409(own_api: tuple[TestClient, ApiSettings]) -> None:
    client, _ = own_api
    key = {"Idempotency-Key": "reused"}
    assert client.post("/jobs", json=JOB, headers=key).status_code == 202
    changed: dict[str, Any] = {**JOB, "model_name": "idem-other"}
    refused = client.post("/jobs", json=changed, headers=key)
    assert refused.status_code == 409
    assert refused.json()["code"] == "idempotency_key_reused"
    assert jobs_of(client, "idem-other") == 0


def test_a_failed_submission_can_be_sent_again_under_its_key(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    key = {"Idempotency-Key": "retry-me"}
    bad = {**JOB, "dataset": "sklearn:no_such_set"}
    assert client.post("/jobs", json=bad, headers=key).status_code == 404
    assert client.post("/jobs", json=bad, headers=key).status_code == 404  # not replayed
    assert client.post("/jobs", json=JOB, headers=key).status_code == 202


def test_an_upload_sent_again_stores_one_dataset(own_api: tuple[TestClient, ApiSettings]) -> None:
    client, _ = own_api
    csv = b"a,y\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(20))
    key = {"Idempotency-Key": "upload-1"}

    def send(data: bytes) -> Any:
        return client.post(
            "/datasets", files={"file": ("t.csv", data)}, data={"target": "y"}, headers=key
        )

    first, again = send(csv), send(csv)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert send(csv + b"99,1\n").status_code == 409


def test_keys_expire_and_a_claim_never_answered_goes_stale(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    key = {"Idempotency-Key": "expires-0001"}
    first = client.post("/jobs", json={**JOB, "model_name": "idem-ttl"}, headers=key)
    assert first.status_code == 202, first.text
    sm = client.app.state.sessionmaker  # type: ignore[attr-defined]
    with sm() as s:
        # What an API process that died mid-request leaves: a claim with no answer.
        s.add(
            IdempotencyRecord(
                owner="anonymous",
                key="orphaned",
                operation="jobs",
                request_sha256="0" * 64,
                status=0,
                response={},
            )
        )
        s.commit()
        now = utcnow()
        assert idempotency.expire(s, now=now, ttl_s=86400) == 0  # both fresh
        later = now + timedelta(seconds=idempotency.STALE_CLAIM_S + 1)
        assert idempotency.expire(s, now=later, ttl_s=86400) == 1  # the claim only
        assert s.get(IdempotencyRecord, ("anonymous", "orphaned", "jobs")) is None
        assert idempotency.expire(s, now=now + timedelta(days=1, seconds=1), ttl_s=86400) == 1
        s.commit()
    # Past its time the key is free: the same request submits a new job.
    again = client.post("/jobs", json={**JOB, "model_name": "idem-ttl"}, headers=key)
    assert again.status_code == 202
    assert again.json()["id"] != first.json()["id"]
    assert jobs_of(client, "idem-ttl") == 2
