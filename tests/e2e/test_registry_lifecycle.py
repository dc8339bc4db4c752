"""The registry lifecycle on the whole stack as real processes — `kiln up` on PostgreSQL,
Redis and an S3 bucket (moto's S3 server, its own process on loopback): a trained
version's lineage is true, artifacts live in the bucket and are checked on the way out,
an alias is promoted and the predictor follows it within 2 s, a retrain on other data
records where it came from, compare shows the stored per-fold metrics, and a version's
evaluation report is there (or, for a version without one, written by a report job)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sqlalchemy import update

from registry.db import make_engine
from registry.models import ModelVersion
from tests.conftest import create_pg_database, drop_pg_database, pg_url, require_server
from tests.e2e.conftest import (
    REDIS_URL,
    Stack,
    bootstrap_key,
    children_of,
    cmdline,
    free_port,
    http,
    kiln_command,
    wait_ready,
)
from tests.factories import mlp
from tests.s3server import CREDS, REGION, moto_s3_server, s3_client
from training.spec import ModelSpec

pytestmark = pytest.mark.e2e

SPEC = mlp(8, epochs=6, batch_size=32, k_folds=3, seed=11)
BUCKET = "kiln-e2e"
PREFIX = "artifacts/"


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    home = tmp_path_factory.mktemp("kiln-s3")
    require_server(
        "Redis on 127.0.0.1:6379", lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    )
    with moto_s3_server(home / "moto.log") as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        dbname = create_pg_database()
        redis.Redis.from_url(REDIS_URL).flushdb()
        api_port, predict_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update(
            KILN_HOME=str(home),
            API_PORT=str(api_port),
            PREDICT_PORT=str(predict_port),
            DATABASE_URL=pg_url(dbname),
            REDIS_URL=REDIS_URL,
            ARTIFACT_STORE="s3",
            S3_ENDPOINT_URL=endpoint,
            S3_BUCKET=BUCKET,
            S3_PREFIX=PREFIX,
            S3_REGION=REGION,
            AWS_ACCESS_KEY_ID=CREDS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=CREDS["aws_secret_access_key"],
            WORKER_HEARTBEAT_INTERVAL_S="1",
            PYTHONUNBUFFERED="1",
        )
        bootstrap_key(env)
        log = home / "kiln-up.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [kiln_command(), "up"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        stack = Stack(
            kind="postgres+redis+s3",
            home=home,
            api=f"http://127.0.0.1:{api_port}",
            predict=f"http://127.0.0.1:{predict_port}",
            proc=proc,
            log=log,
            env=env,
        )
        try:
            wait_ready(stack)
            yield stack, endpoint
        finally:
            kids = children_of(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for pid in kids:
                if Path(f"/proc/{pid}").exists() and cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
            http.headers.pop("Authorization", None)
            drop_pg_database(dbname)


def wait_job(api: str, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{api}/jobs/{job_id}", timeout=10).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def served_version(predict: str, ref: str, version: int, within_s: float = 2.0) -> bool:
    """Whether the predictor serves `version` for `ref` within `within_s` of now (the
    promise an alias move makes), by the model metadata and an inference that names it."""
    body = {
        "inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [1.0] * 30}]
    }
    deadline = time.monotonic() + within_s
    while True:
        meta = http.get(f"{predict}/v2/models/{ref}", timeout=10).json()
        if meta.get("parameters", {}).get("version") == version:
            answer = http.post(f"{predict}/v2/models/{ref}/infer", json=body, timeout=10)
            return answer.status_code == 200 and answer.json()["model_version"] == str(version)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def dist_version(*names: str) -> str:
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError(f"none of {names} is installed")


@pytest.fixture(scope="module")
def trained(s3_stack: tuple[Stack, str]) -> dict[str, Any]:
    stack, _ = s3_stack
    model = f"life-{uuid.uuid4().hex[:6]}"
    resp = http.post(
        f"{stack.api}/jobs",
        json={"model_name": model, "dataset": "sklearn:breast_cancer", "spec": SPEC},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    job = wait_job(stack.api, resp.json()["id"])
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    return {"model": model, "job": job}


def test_lineage_of_a_trained_version_is_true(
    s3_stack: tuple[Stack, str], trained: dict[str, Any]
) -> None:
    stack, _ = s3_stack
    model, job = trained["model"], trained["job"]
    lineage = http.get(f"{stack.api}/models/{model}/versions/1/lineage").json()
    dataset = http.get(f"{stack.api}/datasets/{job['dataset_id']}").json()
    assert lineage["job"]["id"] == job["id"]
    assert lineage["job"]["state"] == "succeeded"
    assert lineage["spec"] == job["spec"]
    # What was sent, with every default the spec schema filled in made explicit.
    assert lineage["spec"] == ModelSpec.model_validate(SPEC).model_dump(mode="json")
    assert lineage["seed"] == SPEC["seed"]
    assert lineage["dataset"]["id"] == dataset["id"]
    assert lineage["dataset"]["sha256"] == dataset["sha256"]
    assert lineage["dataset"]["shape"] == [569, 30]
    libs = lineage["library_versions"]
    assert libs["kiln"] == importlib.metadata.version("kiln")
    assert libs["tensorflow"] == dist_version("tensorflow-cpu", "tensorflow")
    for dist in ("keras", "tf2onnx", "onnx", "onnxruntime"):
        assert libs[dist] == dist_version(dist), dist
    # This machine has no GPU that TensorFlow can use.
    assert lineage["device"] == "CPU"
    assert lineage["retrained_from"] is None


def test_artifacts_live_in_the_bucket_and_are_checked(
    s3_stack: tuple[Stack, str], trained: dict[str, Any]
) -> None:
    stack, endpoint = s3_stack
    model = trained["model"]
    mv = http.get(f"{stack.api}/models/{model}/versions/1").json()
    s3 = s3_client(endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    onnx, keras = mv["artifacts"]["onnx"]["sha256"], mv["artifacts"]["keras"]["sha256"]
    assert f"{PREFIX}{onnx[:2]}/{onnx}" in keys
    assert f"{PREFIX}{keras[:2]}/{keras}" in keys
    assert f"{PREFIX}{mv['dataset']['sha256'][:2]}/{mv['dataset']['sha256']}" in keys
    assert not (stack.home / "artifacts").exists()
    got = http.get(mv["artifacts"]["onnx"]["url"])
    assert hashlib.sha256(got.content).hexdigest() == onnx
    # The predictor loads the ONNX file from the bucket too.
    infer = http.post(
        f"{stack.predict}/v2/models/{model}/versions/1/infer",
        json={
            "inputs": [
                {"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [1.0] * 30}
            ]
        },
        timeout=30,
    )
    assert infer.status_code == 200, infer.text


def test_promote_retrain_and_compare(s3_stack: tuple[Stack, str], trained: dict[str, Any]) -> None:
    stack, _ = s3_stack
    model = trained["model"]
    api = stack.api
    put = http.put(
        f"{api}/models/{model}/aliases/production", json={"version": 1, "reason": "first"}
    )
    assert put.status_code == 200, put.text
    assert put.json()["actor"] == "e2e-admin"  # the owner of the stack's key
    assert served_version(stack.predict, f"{model}@production", 1)

    # Retrain version 1's spec on other data: an upload of the first 400 rows.
    frame = load_breast_cancer(as_frame=True).frame.head(400)
    data = frame.to_csv(index=False).encode()
    up = http.post(
        f"{api}/datasets",
        files={"file": ("cancer-400.csv", io.BytesIO(data), "text/csv")},
        data={"target": "target"},
    )
    assert up.status_code == 201, up.text
    retrain = http.post(
        f"{api}/models/{model}/versions/1/retrain", json={"dataset": up.json()["id"]}, timeout=60
    )
    assert retrain.status_code == 202, retrain.text
    job = wait_job(api, retrain.json()["id"])
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    assert job["model_version"] == 2
    assert job["dataset_id"] == up.json()["id"]
    v2 = http.get(f"{api}/models/{model}/versions/2").json()
    assert v2["retrained_from"] == {"model_name": model, "version": 1}
    assert v2["spec"] == http.get(f"{api}/models/{model}/versions/1").json()["spec"]
    lineage = http.get(f"{api}/models/{model}/versions/2/lineage").json()
    assert lineage["retrained_from"] == {"model_name": model, "version": 1}
    assert lineage["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert lineage["dataset"]["shape"] == [400, 30]

    # Alias moves made over REST reach the running predictor.
    moved = http.put(f"{api}/models/{model}/aliases/production", json={"version": 2}).json()
    assert (moved["from_version"], moved["to_version"]) == (1, 2)
    assert served_version(stack.predict, f"{model}@production", 2)
    back = http.post(f"{api}/models/{model}/aliases/production/rollback", json={}).json()
    assert (back["from_version"], back["to_version"]) == (2, 1)
    assert served_version(stack.predict, f"{model}@production", 1)
    history = http.get(f"{api}/models/{model}/aliases/history").json()
    assert [(h["from_version"], h["to_version"]) for h in history] == [(2, 1), (1, 2), (None, 1)]

    compared = http.get(f"{api}/models/{model}/compare", params={"versions": "1,2"}).json()
    versions = {n: http.get(f"{api}/models/{model}/versions/{n}").json() for n in (1, 2)}
    for metric in ("accuracy", "f1", "roc_auc"):
        rows = {r["version"]: r for r in compared["metrics"][metric]}
        for n, mv in versions.items():
            assert rows[n]["mean"] == pytest.approx(mv["metrics"][metric]["mean"])
            assert rows[n]["std"] == pytest.approx(mv["metrics"][metric]["std"])
            assert rows[n]["folds"] == pytest.approx([f["metrics"][metric] for f in mv["folds"]])
        assert rows[2]["diff_from_baseline"] == pytest.approx(
            versions[2]["metrics"][metric]["mean"] - versions[1]["metrics"][metric]["mean"]
        )


def test_a_version_has_its_report_and_an_older_one_gets_one_from_a_worker(
    s3_stack: tuple[Stack, str], trained: dict[str, Any]
) -> None:
    stack, _ = s3_stack
    model = trained["model"]
    url = f"{stack.api}/models/{model}/versions/1/report"
    version = http.get(f"{stack.api}/models/{model}/versions/1").json()

    report = http.get(url).json()

    # Written by the training job: each fold's model on its validation rows, with the
    # figures the version's folds carry.
    assert [(s["source"], s["fold"]) for s in report["sections"]] == [
        ("fold", f["fold"]) for f in version["folds"]
    ]
    for section, fold in zip(report["sections"], version["folds"], strict=True):
        assert section["n_rows"] == fold["n_val"]
        assert section["metrics"]["f1"] == fold["metrics"]["f1"]
        assert section["curves"][0]["roc"]["auc"] == fold["metrics"]["roc_auc"]
    html = http.get(f"{url}.html")
    assert html.headers["content-type"].startswith("text/html")
    assert len(html.content) < 1_000_000
    assert "<svg" in html.text
    assert "<script" not in html.text

    # And its reference profile: the 569 rows it trained on (no test split here).
    profile_url = f"{stack.api}/models/{model}/versions/1/profile"
    profile = http.get(profile_url).json()
    assert profile["n_rows"] == 569
    assert [c["count"] for c in profile["classes"]] == [212, 357]
    assert profile["features"][0]["name"] == "mean radius"

    # A version registered before reports: its report and profile are gone, as if never
    # written.
    engine = make_engine(stack.env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            update(ModelVersion)
            .where(ModelVersion.job_id == version["job_id"])
            .values(report_sha256=None, profile_sha256=None)
        )
    engine.dispose()
    assert http.get(url).json()["code"] == "report_not_found"
    assert http.get(profile_url).json()["code"] == "profile_not_found"

    queued = http.post(url, timeout=30)
    assert queued.status_code == 202, queued.text
    job = wait_job(stack.api, queued.json()["id"])
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    assert job["kind"] == "report"

    (section,) = http.get(url).json()["sections"]
    # No test split and no fold models kept: the version's model on its training rows.
    assert section["source"] == "training"
    assert section["n_rows"] == 569
    X, y = load_breast_cancer(return_X_y=True)
    served = http.post(
        f"{stack.predict}/v2/models/{model}/versions/1/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "data": X.astype("float32").ravel().tolist(),
                }
            ]
        },
        timeout=60,
    ).json()
    p = served["outputs"][0]["data"]
    assert section["curves"][0]["roc"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert http.post(url, timeout=30).json()["code"] == "report_exists"
    assert http.get(profile_url).json() == profile  # the job wrote the same profile again


# Last: it corrupts version 1's ONNX file in the bucket.
def test_a_corrupted_object_in_the_bucket_is_refused(
    s3_stack: tuple[Stack, str], trained: dict[str, Any]
) -> None:
    stack, endpoint = s3_stack
    model = trained["model"]
    mv = http.get(f"{stack.api}/models/{model}/versions/1").json()
    onnx = mv["artifacts"]["onnx"]["sha256"]
    s3_client(endpoint).put_object(
        Bucket=BUCKET, Key=f"{PREFIX}{onnx[:2]}/{onnx}", Body=b"not the model"
    )
    resp = http.get(mv["artifacts"]["onnx"]["url"])
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "is corrupt" in resp.json()["detail"]
