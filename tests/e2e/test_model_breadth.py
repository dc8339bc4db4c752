"""A CNN on images, end to end on real processes: sklearn's digits as 8×8×1 images →
k-fold training in a Celery worker → registered ONNX version that passes parity →
a prediction over /v2 with shape [1, 8, 8, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from tests.e2e.conftest import Stack, http
from tests.e2e.test_end_to_end import keras_probabilities, wait_for
from tests.factories import cnn

pytestmark = pytest.mark.e2e

CNN = cnn(epochs=4, batch_size=32, k_folds=2, seed=3)


@pytest.fixture(scope="module")
def cnn(stack: Stack) -> dict[str, Any]:
    resp = http.post(
        f"{stack.api}/jobs",
        json={"model_name": "digits-cnn", "dataset": "sklearn:digits_images", "spec": CNN},
    )
    assert resp.status_code == 202, resp.text
    job, _ = wait_for(stack.api, resp.json()["id"])
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    mv = http.get(job["links"]["model_version"]).json()
    return {"job": job, "version": mv}


def test_cnn_version_is_registered_with_image_signature_and_parity(cnn: dict[str, Any]) -> None:
    mv = cnn["version"]
    assert mv["dataset"]["n_rows"] == 1797
    assert mv["dataset"]["kind"] == "image"
    assert mv["dataset"]["shape"] == [1797, 8, 8, 1]
    assert len(mv["folds"]) == 2
    assert sum(f["n_val"] for f in mv["folds"]) == 1797
    # Ten classes: chance is 0.1; a small CNN after 4 epochs is far above it.
    assert mv["metrics"]["accuracy"]["mean"] > 0.8
    assert mv["parity"]["passed"]
    assert mv["parity"]["tolerance"] == pytest.approx(1e-4)
    assert mv["parity"]["rows"] == 1797
    sig = mv["signature"]
    assert sig["kind"] == "image"
    assert sig["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert sig["outputs"][0]["shape"] == [-1, 10]
    assert sig["feature_names"] is None
    assert sig["class_labels"] == list(range(10))


def test_the_onnx_artifact_answers_an_image_like_keras(stack: Stack, cnn: dict[str, Any]) -> None:
    mv = cnn["version"]
    images = load_digits().images.astype(np.float32)[:5, :, :, np.newaxis]
    onnx_bytes = http.get(mv["artifacts"]["onnx"]["url"]).content
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"features": images[:1]})
    assert got.shape == (1, 10)
    expected = keras_probabilities(stack, mv["artifacts"]["keras"]["sha256"], images[:1])
    assert np.max(np.abs(got - expected)) < 1e-4


def test_v2_infer_takes_one_image(stack: Stack, cnn: dict[str, Any]) -> None:
    mv = cnn["version"]
    image = load_digits().images.astype(np.float32)[:1, :, :, np.newaxis]
    expected = keras_probabilities(stack, mv["artifacts"]["keras"]["sha256"], image)
    infer = http.post(
        f"{stack.predict}/v2/models/digits-cnn/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 8, 8, 1],
                    "datatype": "FP32",
                    "data": image.ravel().tolist(),
                }
            ]
        },
    )
    assert infer.status_code == 200, infer.text
    out = infer.json()["outputs"][0]
    assert out["shape"] == [1, 10]
    assert np.max(np.abs(np.array(out["data"]).reshape(1, 10) - expected)) < 1e-4
