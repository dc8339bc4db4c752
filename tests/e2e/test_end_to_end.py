"""The whole path on real processes: upload → k-fold training in a Celery worker →
registered ONNX version → predictions over HTTP equal to the Keras model's."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import time
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tests.e2e.conftest import Stack, children_of, cmdline, http, kiln_command, maps_tensorflow
from tests.factories import mlp

pytestmark = pytest.mark.e2e

SPEC = mlp(
    16,
    0.1,
    8,
    optimizer={"name": "adam", "learning_rate": 0.005},
    epochs=25,
    batch_size=32,
    k_folds=3,
    seed=7,
)
TERMINAL = ("succeeded", "failed", "cancelled")


def breast_cancer_csv() -> tuple[bytes, list[str], np.ndarray]:
    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    return frame.to_csv(index=False).encode(), features, frame[features].to_numpy(np.float32)


def wait_for(
    api: str, job_id: str, timeout: float = 300
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"{api}/jobs/{job_id}", timeout=10).json()
        seen.append(job)
        if job["state"] in TERMINAL:
            return job, seen
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s; last: {seen[-1]}")


@pytest.fixture(scope="module")
def trained(stack: Stack) -> dict[str, Any]:
    data, features, X = breast_cancer_csv()
    up = http.post(
        f"{stack.api}/datasets",
        files={"file": ("breast_cancer.csv", io.BytesIO(data), "text/csv")},
        data={"target": "target"},
    )
    assert up.status_code == 201, up.text
    dataset = up.json()
    started = time.monotonic()
    resp = http.post(
        f"{stack.api}/jobs", json={"model_name": "cancer", "dataset": dataset["id"], "spec": SPEC}
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["location"].endswith(f"/jobs/{resp.json()['id']}")
    job, seen = wait_for(stack.api, resp.json()["id"])
    elapsed = time.monotonic() - started
    print(f"\n[{stack.kind}] end-to-end job took {elapsed:.1f} s")  # noqa: T201
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    return {"job": job, "seen": seen, "dataset": dataset, "csv": data, "features": features, "X": X}


def test_job_reports_progress_and_transitions(trained: dict[str, Any]) -> None:
    job = trained["job"]
    assert [e["state"] for e in job["events"]] == ["queued", "running", "succeeded"]
    assert job["started_at"] <= job["finished_at"]
    progress = [j["progress"] for j in trained["seen"] if j["state"] == "running" and j["progress"]]
    assert progress, "no progress was reported while the job ran"
    assert all(1 <= p["epoch"] <= SPEC["epochs"] for p in progress)
    assert any(p["phase"] == "cv" and 1 <= p["fold"] <= 3 for p in progress)


def test_registry_holds_sane_metrics_and_parity(stack: Stack, trained: dict[str, Any]) -> None:
    job = trained["job"]
    mv = http.get(job["links"]["model_version"]).json()
    assert mv["version"] == job["model_version"] == 1
    assert mv["dataset"]["sha256"] == hashlib.sha256(trained["csv"]).hexdigest()
    assert mv["dataset"]["n_rows"] == 569
    assert len(mv["folds"]) == 3
    assert sum(f["n_val"] for f in mv["folds"]) == 569
    for fold in mv["folds"]:
        cm = np.array(fold["metrics"]["confusion_matrix"])
        assert cm.shape == (2, 2)
        assert cm.sum() == fold["n_val"]
        assert len(fold["history"]["loss"]) == SPEC["epochs"]
    f1 = [f["metrics"]["f1"] for f in mv["folds"]]
    # Chance on this table is an F1 of about 0.63 (always "benign"); a working MLP is > 0.9.
    assert mv["metrics"]["f1"]["mean"] == pytest.approx(np.mean(f1))
    assert mv["metrics"]["f1"]["std"] == pytest.approx(np.std(f1))
    assert mv["metrics"]["f1"]["mean"] > 0.9
    assert mv["metrics"]["roc_auc"]["mean"] > 0.95
    assert mv["parity"]["passed"]
    assert mv["parity"]["max_abs_diff"] < 1e-4
    sig = mv["signature"]
    assert sig["feature_names"] == trained["features"]
    assert sig["class_labels"] == [0, 1]
    assert sig["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}]
    onnx = http.get(mv["artifacts"]["onnx"]["url"])
    assert onnx.status_code == 200
    assert hashlib.sha256(onnx.content).hexdigest() == mv["artifacts"]["onnx"]["sha256"]
    models = http.get(f"{stack.api}/models").json()["items"]
    assert {"name": "cancer", "latest_version": 1}.items() <= {
        k: v for m in models if m["name"] == "cancer" for k, v in m.items()
    }.items()


def keras_probabilities(stack: Stack, keras_sha256: str, X: np.ndarray) -> np.ndarray:
    """The Keras model's own answers, computed in a separate process (TF stays out of pytest)."""
    path = stack.home / "artifacts" / keras_sha256[:2] / keras_sha256
    np.save(stack.home / "X.npy", X)
    code = (
        "import sys, numpy as np, keras, shutil, tempfile, os;"
        "d = tempfile.mkdtemp(); p = os.path.join(d, 'm.keras'); shutil.copy(sys.argv[1], p);"
        "m = keras.models.load_model(p); np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))"
    )
    out = stack.home / "keras_out.npy"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    import sys

    subprocess.run(
        [sys.executable, "-c", code, str(path), str(stack.home / "X.npy"), str(out)],
        check=True,
        env=env,
    )
    return np.load(out)


def test_predictions_match_keras_through_both_routes(stack: Stack, trained: dict[str, Any]) -> None:
    mv = http.get(trained["job"]["links"]["model_version"]).json()
    X = trained["X"][:40]
    expected = keras_probabilities(stack, mv["artifacts"]["keras"]["sha256"], X).reshape(-1)

    infer = http.post(
        f"{stack.predict}/v2/models/cancer/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "data": X.ravel().tolist(),
                }
            ]
        },
    )
    assert infer.status_code == 200, infer.text
    body = infer.json()
    assert body["model_name"] == "cancer"
    assert str(body["model_version"]) == "1"
    got = np.array(body["outputs"][0]["data"], dtype=np.float64)
    assert np.max(np.abs(got - expected)) < 1e-4

    rows = [dict(zip(trained["features"], map(float, r), strict=True)) for r in X]
    friendly = http.post(f"{stack.predict}/predict/cancer/versions/1", json={"rows": rows})
    assert friendly.status_code == 200, friendly.text
    preds = friendly.json()["predictions"]
    p1 = np.array([p["probabilities"]["1"] for p in preds])
    assert np.max(np.abs(p1 - expected)) < 1e-4
    assert [p["label"] for p in preds] == [1 if e >= 0.5 else 0 for e in expected]


def test_api_keys_guard_the_api_and_the_predictors_fast_path(
    stack: Stack, trained: dict[str, Any]
) -> None:
    infer_url = f"{stack.predict}/v2/models/cancer/versions/1/infer"
    one_row = {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 30],
                "datatype": "FP32",
                "data": [float(v) for v in trained["X"][0]],
            }
        ]
    }
    if stack.kind == "embedded":  # runs open, and says so at start
        assert httpx.get(f"{stack.api}/models").status_code == 200
        assert httpx.post(infer_url, json=one_row).status_code == 200
        assert "KILN IS RUNNING OPEN" in stack.log.read_text(errors="replace")
        return
    anonymous = httpx.get(f"{stack.api}/models")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert httpx.post(infer_url, json=one_row).status_code == 401
    assert httpx.post(f"{stack.api}/models/cancer/versions/1/archive").status_code == 401

    env = {**stack.env, "KILN_API_URL": stack.api}
    made = subprocess.run(
        [kiln_command(), "keys", "create", "scorer", "--scope", "predict"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    scorer = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    deadline = time.monotonic() + 10  # a new key counts within AUTH_KEY_REFRESH_S
    served = httpx.post(infer_url, json=one_row, headers=scorer)
    while served.status_code == 401 and time.monotonic() < deadline:
        time.sleep(0.2)
        served = httpx.post(infer_url, json=one_row, headers=scorer)
    assert served.status_code == 200, served.text
    refused = httpx.post(f"{stack.api}/models/cancer/versions/1/archive", headers=scorer)
    while refused.status_code == 401 and time.monotonic() < deadline:
        time.sleep(0.2)
        refused = httpx.post(f"{stack.api}/models/cancer/versions/1/archive", headers=scorer)
    assert refused.status_code == 403
    assert refused.json()["code"] == "scope_missing"


def test_model_metadata_reports_the_provider(stack: Stack, trained: dict[str, Any]) -> None:
    meta = http.get(f"{stack.predict}/v2/models/cancer").json()
    assert meta["name"] == "cancer"
    assert meta["inputs"][0]["shape"] == [-1, 30]
    assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    assert http.get(f"{stack.predict}/v2/models/cancer/versions/1/ready").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (
            "/v2/models/cancer/infer",
            {
                "inputs": [
                    {"name": "features", "shape": [1, 29], "datatype": "FP32", "data": [0.0] * 29}
                ]
            },
            400,
            "30",
        ),
        (
            "/v2/models/cancer/infer",
            {
                "inputs": [
                    # BOOL and small integers convert to FP32 exactly; these do not.
                    {
                        "name": "features",
                        "shape": [1, 30],
                        "datatype": "INT64",
                        "data": [2**25] * 30,
                    }
                ]
            },
            400,
            "FP32",
        ),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]},
            400,
            "features",
        ),
        (
            "/v2/models/ghost/infer",
            {
                "inputs": [
                    {"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}
                ]
            },
            404,
            "ghost",
        ),
        (
            "/v2/models/cancer/versions/9/infer",
            {
                "inputs": [
                    {"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}
                ]
            },
            404,
            "9",
        ),
        ("/predict/cancer", {"rows": [{"mean radius": 1.0}]}, 422, "missing"),
    ],
    ids=["shape", "dtype", "input-name", "unknown-model", "unknown-version", "missing-feature"],
)
def test_bad_prediction_requests(
    stack: Stack, trained: dict[str, Any], path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    resp = http.post(stack.predict + path, json=body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]


def test_api_and_predictor_never_load_tensorflow(stack: Stack, trained: dict[str, Any]) -> None:
    api = stack.pid_of("services.api.app")
    predict = stack.pid_of("services.predict.app")
    worker = stack.pid_of("workers.worker")
    assert not maps_tensorflow(api)
    assert not maps_tensorflow(predict)
    # The worker's parent forks the children that train: TensorFlow must not be in it either.
    assert not maps_tensorflow(worker)


def test_a_killed_worker_loses_no_job(stack: Stack, trained: dict[str, Any]) -> None:
    spec = {**SPEC, "epochs": 200, "k_folds": 2}
    resp = http.post(
        f"{stack.api}/jobs",
        json={"model_name": "cancer-crash", "dataset": "sklearn:breast_cancer", "spec": spec},
    )
    job_id = resp.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = http.get(f"{stack.api}/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"]:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"job never ran: {job}")
    pid = int(job["worker"].rsplit(":", 1)[1])
    assert "celery" in cmdline(pid) or pid in children_of(stack.pid_of("workers.worker"))
    os.kill(pid, signal.SIGKILL)
    job, _ = wait_for(stack.api, job_id, timeout=400)
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    assert job["attempt"] == 2
    assert any("stopped sending heartbeats" in (e["message"] or "") for e in job["events"])
    assert job["model_version"] == 1


def _wait_running_with_progress(api: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = http.get(f"{api}/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"]:
            return job
        assert job["state"] not in TERMINAL, job["reason"]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reported progress: {job}")


def test_cancel_over_http_stops_running_and_queued_jobs(stack: Stack) -> None:
    # Long enough that it cannot finish on its own while the test waits (~minutes of epochs).
    # Early stopping (on the training loss, patient beyond the last epoch) decides per
    # fold, so these folds train apart, in spawned processes, rather than together.
    long_spec = {
        **SPEC,
        "epochs": 5000,
        "k_folds": 2,
        "batch_size": 8,
        "early_stopping": {"monitor": "loss", "patience": 5000},
    }
    submit = {"model_name": "cancer-cancel", "dataset": "sklearn:breast_cancer"}
    running_id = http.post(f"{stack.api}/jobs", json={**submit, "spec": long_spec}).json()["id"]
    # One worker process: the second job waits in the queue behind the first.
    queued_id = http.post(f"{stack.api}/jobs", json={**submit, "spec": long_spec}).json()["id"]
    running = _wait_running_with_progress(stack.api, running_id)
    pid = int(running["worker"].rsplit(":", 1)[1])
    # This job is big enough for its folds to train in spawned processes (one per core).
    fold_procs = children_of(pid)
    if len(os.sched_getaffinity(0)) >= 2:
        assert fold_procs, "a 2-fold job on 2 cores trains its folds in processes"
    # Its curves are served while it runs, and grow.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        curves = http.get(f"{stack.api}/jobs/{running_id}/history").json()
        running_folds = [f for f in curves["folds"] if not f["done"]]
        if running_folds and len(running_folds[0]["history"]["loss"]) >= 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no growing curve was served: {curves}")
    assert {"loss", "val_loss"} <= set(running_folds[0]["history"])

    queued_cancel = http.post(f"{stack.api}/jobs/{queued_id}/cancel")
    assert queued_cancel.status_code == 200, queued_cancel.text
    assert queued_cancel.json()["state"] == "cancelled"

    asked = time.monotonic()
    resp = http.post(f"{stack.api}/jobs/{running_id}/cancel")
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "cancelled"
    # The worker's process stops training at its next batch and ends the task; with
    # max_tasks_per_child=1 the child then exits, so its pid disappearing is the proof
    # that training really stopped (the row alone was cancelled by the API at once).
    while time.monotonic() - asked < 30 and os.path.exists(f"/proc/{pid}") and cmdline(pid):
        time.sleep(0.2)
    stopped_after = time.monotonic() - asked
    print(f"\n[{stack.kind}] the worker stopped {stopped_after:.1f} s after cancel")  # noqa: T201
    # Measured here: 2.2 s (the next heartbeat, then the next 32-batch call); 10 s of slack.
    assert stopped_after < 10, f"the worker still trained {stopped_after:.0f}s after cancel"
    time.sleep(1)
    left = [p for p in fold_procs if os.path.exists(f"/proc/{p}") and cmdline(p)]
    assert not left, f"fold processes outlived the cancelled job: {[cmdline(p) for p in left]}"

    job = http.get(f"{stack.api}/jobs/{running_id}").json()
    assert job["state"] == "cancelled"
    assert job["model_version"] is None
    assert [e["state"] for e in job["events"]] == ["queued", "running", "cancelled"]
    # It keeps what it had: the curves up to where it stopped.
    kept = http.get(f"{stack.api}/jobs/{running_id}/history").json()
    assert kept["state"] == "cancelled"
    assert kept["refit"] is None
    assert all(not f["done"] for f in kept["folds"])
    assert max(len(f["history"]["loss"]) for f in kept["folds"]) >= len(
        running_folds[0]["history"]["loss"]
    )
    again = http.post(f"{stack.api}/jobs/{running_id}/cancel")
    assert again.status_code == 409, again.text

    # The worker takes the next job: the cancelled queued one is skipped, a new one trains.
    quick = {**SPEC, "epochs": 3, "k_folds": 2}
    next_id = http.post(f"{stack.api}/jobs", json={**submit, "spec": quick}).json()["id"]
    done, _ = wait_for(stack.api, next_id, timeout=300)
    assert done["state"] == "succeeded", f"{done['reason']}\n{stack.log_tail()}"
    skipped = http.get(f"{stack.api}/jobs/{queued_id}").json()
    assert skipped["state"] == "cancelled"
    assert skipped["attempt"] == 0, "a worker trained a job that was cancelled while queued"
    assert [e["state"] for e in skipped["events"]] == ["queued", "cancelled"]
    # Only the job that finished registered a version of this model.
    versions = http.get(f"{stack.api}/models/cancer-cancel/versions").json()
    assert [v["job_id"] for v in versions] == [next_id]
