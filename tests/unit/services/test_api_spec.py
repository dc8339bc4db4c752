"""Model breadth at the door: image uploads, and every spec rule refused with 422 over HTTP.

A spec that cannot build on the chosen dataset (a Conv2D on a table, an LSTM on images,
a window longer than the series ...) is refused before a job row exists.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.unit.services.test_api import counts

CNN: dict[str, Any] = {
    "task": "multiclass",
    "loss": "sparse_categorical_crossentropy",
    "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "epochs": 2,
    "k_folds": 2,
}
MLP: dict[str, Any] = {
    "task": "binary",
    "loss": "binary_crossentropy",
    "layers": [
        {"type": "Dense", "units": 4, "activation": "relu"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"},
    ],
    "epochs": 2,
    "k_folds": 2,
}
LSTM_REG: dict[str, Any] = {
    "task": "regression",
    "loss": "mse",
    "layers": [{"type": "LSTM", "units": 4}, {"type": "Dense", "units": 1}],
    "window": {"steps": 10, "horizon": 1},
    "epochs": 2,
    "k_folds": 2,
}


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload_npz(client: TestClient, data: bytes, **form: str) -> Any:
    return client.post(
        "/datasets",
        files={"file": ("x.npz", io.BytesIO(data), "application/octet-stream")},
        data=form,
    )


def with_layers(
    base: dict[str, Any], layers: list[dict[str, Any]], **changes: Any
) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec["layers"] = layers
    spec.update(changes)
    return spec


def test_npz_upload_records_kind_shape_and_classes(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(12, 5, 4), dtype=np.uint8)
    y = np.array([0, 1, 2] * 4)
    resp = upload_npz(client, npz(x=x, y=y))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["kind"] == "image"
    assert body["shape"] == [12, 5, 4, 1]
    assert body["target"] == "y"
    assert body["class_counts"] == {"0": 4, "1": 4, "2": 4}
    assert upload_npz(client, npz(x=x, y=y)).status_code == 200


def test_csv_upload_records_table_kind_and_shape(client: TestClient) -> None:
    csv = b"a,b,label\n1,2,0\n2,1,1\n3,0,0\n4,2,1\n"
    resp = client.post(
        "/datasets",
        files={"file": ("t.csv", io.BytesIO(csv), "text/csv")},
        data={"target": "label"},
    )
    assert resp.status_code in (200, 201), resp.text
    assert resp.json()["kind"] == "table"
    assert resp.json()["shape"] == [4, 2]


GOOD_X = np.zeros((6, 4, 4), dtype=np.float32)
GOOD_Y = np.arange(6) % 2
BAD_IMAGES = [
    (b"a,b\n1,2\n", {"kind": "image"}, "not an NPZ"),
    (npz(images=GOOD_X, y=GOOD_Y), {}, "no array 'x'"),
    (npz(x=GOOD_X), {}, "no array 'y'"),
    (npz(x=GOOD_X, y=GOOD_Y[:5]), {}, "x holds 6 images but y holds 5 labels"),
    (npz(x=np.zeros((6, 16)), y=GOOD_Y), {}, "expected images (N, H, W) or (N, H, W, C)"),
    (npz(x=np.zeros((6, 4, 4, 9)), y=GOOD_Y), {}, "channels"),
    (npz(x=np.full((6, 4, 4), "a"), y=GOOD_Y), {}, "expected numbers"),
    (npz(x=np.where(np.eye(4) > 0, np.nan, 0.0)[None].repeat(6, 0), y=GOOD_Y), {}, "NaN"),
    (npz(x=GOOD_X, y=GOOD_Y.reshape(3, 2)), {}, "expected one label per image"),
]


@pytest.mark.parametrize(("data", "form", "needle"), BAD_IMAGES)
def test_bad_image_uploads_are_refused_and_change_nothing(
    client: TestClient, db_url: str, data: bytes, form: dict[str, str], needle: str
) -> None:
    before = counts(db_url)
    resp = upload_npz(client, data, **form)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.json()["detail"]
    assert counts(db_url) == before


def test_a_table_without_a_target_is_refused(client: TestClient) -> None:
    resp = client.post(
        "/datasets", files={"file": ("t.csv", io.BytesIO(b"a,b\n1,2\n"), "text/csv")}
    )
    assert resp.status_code == 422
    assert "needs the target" in resp.json()["detail"]


def test_cnn_on_builtin_digits_images_is_accepted(client: TestClient) -> None:
    resp = client.post(
        "/jobs", json={"model_name": "digits-cnn", "dataset": "sklearn:digits_images", "spec": CNN}
    )
    assert resp.status_code == 202, resp.text
    job = client.get(resp.headers["location"]).json()
    dataset = client.get(f"/datasets/{job['dataset_id']}").json()
    assert dataset["kind"] == "image"
    assert dataset["shape"] == [1797, 8, 8, 1]
    assert dataset["class_counts"]["0"] == 178
    # The built-in NPZ is byte-for-byte stable, so a second job reuses the same dataset.
    again = client.post(
        "/jobs", json={"model_name": "digits-cnn", "dataset": "sklearn:digits_images", "spec": CNN}
    )
    assert client.get(again.headers["location"]).json()["dataset_id"] == job["dataset_id"]


def test_lstm_over_windows_of_a_table_is_accepted(client: TestClient) -> None:
    resp = client.post(
        "/jobs", json={"model_name": "seq", "dataset": "sklearn:diabetes", "spec": LSTM_REG}
    )
    assert resp.status_code == 202, resp.text


BAD_SPECS = [
    # shape rules, checked against the dataset
    (
        "sklearn:breast_cancer",
        with_layers(MLP, [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, *MLP["layers"]]),
        "layers.0 (Conv2D) expects a (height, width, channels) image per example; it gets [30]",
    ),
    (
        "sklearn:digits_images",
        with_layers(CNN, [{"type": "LSTM", "units": 4}, CNN["layers"][-1]]),
        "layers.0 (LSTM) expects a (steps, features) sequence per example; it gets [8, 8, 1]",
    ),
    (
        "sklearn:digits_images",
        with_layers(CNN, [CNN["layers"][0], CNN["layers"][-1]]),
        "layers.1 (Dense) expects a flat vector per example; it gets [6, 6, 8], "
        "(height, width, channels). Add Flatten or a global pooling layer before it",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP,
            [
                {"type": "Embedding", "input_dim": 10, "output_dim": 2},
                {"type": "Flatten"},
                MLP["layers"][-1],
            ],
        ),
        "Embedding looks up integer codes",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(MLP, [{"type": "GlobalAveragePooling1D"}, MLP["layers"][-1]]),
        "cut it into windows (the spec's window) or add Reshape",
    ),
    (
        "sklearn:iris",
        with_layers(
            LSTM_REG, LSTM_REG["layers"], task="regression", window={"steps": 149, "horizon": 1}
        ),
        "a window of 149 steps with horizon 1 leaves 1 windows in a series of 150 rows",
    ),
    (
        "sklearn:iris",
        with_layers(LSTM_REG, LSTM_REG["layers"], window={"steps": 500, "horizon": 5}),
        "leaves 0 windows in a series of 150 rows",
    ),
    (
        "sklearn:digits_images",
        with_layers(CNN, CNN["layers"], window={"steps": 4}),
        "window is for time-series tables",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP,
            [{"type": "Reshape", "target_shape": [5, 5]}, {"type": "Flatten"}, MLP["layers"][-1]],
        ),
        "target_shape [5, 5] holds 25 values but its input [30] holds 30",
    ),
    (
        "sklearn:digits_images",
        with_layers(
            CNN, [{"type": "MaxPooling2D", "pool_size": 9}, {"type": "Flatten"}, CNN["layers"][-1]]
        ),
        "needs an input of at least 9 along each spatial axis; it gets 8",
    ),
    # field rules, checked by the schema
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP,
            [
                {"type": "Dense", "units": 4},
                {"type": "Embedding", "input_dim": 3, "output_dim": 2},
                MLP["layers"][-1],
            ],
        ),
        "Embedding must be the first layer",
    ),
    (
        "sklearn:breast_cancer",
        {**MLP, "optimizer": {"name": "sgd", "beta_1": 0.9}},
        "optimizer.sgd.beta_1: Extra inputs are not permitted",
    ),
    (
        "sklearn:breast_cancer",
        {**MLP, "optimizer": {"name": "adam", "learning_rate": {"schedule": "step_decay"}}},
        "'exponential_decay', 'cosine_decay'",
    ),
    (
        "sklearn:breast_cancer",
        {
            **MLP,
            "optimizer": {
                "name": "adam",
                "learning_rate": {"schedule": "cosine_decay", "initial_learning_rate": 0.1},
            },
        },
        "decay_steps: Field required",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP, [{"type": "Dense", "units": 4, "kernel_regularizer": {}}, MLP["layers"][-1]]
        ),
        'a regularizer needs "l1", "l2" or both',
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP,
            [{"type": "Dense", "units": 4, "kernel_regularizer": {"l3": 0.1}}, MLP["layers"][-1]],
        ),
        "kernel_regularizer.l3",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            MLP, [{"type": "Dense", "units": 4, "kernel_initializer": "xavier"}, MLP["layers"][-1]]
        ),
        "'glorot_uniform'",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(MLP, [{"type": "Dense", "units": 4, "activation": "mish"}, MLP["layers"][-1]]),
        "'leaky_relu'",
    ),
    (
        "sklearn:digits_images",
        with_layers(
            CNN,
            [
                {"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "causal"},
                *CNN["layers"][1:],
            ],
        ),
        "'valid' or 'same'",
    ),
    (
        "sklearn:digits_images",
        with_layers(CNN, [{"type": "Conv2D", "kernel_size": 3}, *CNN["layers"][1:]]),
        "layers.0.Conv2D.filters: Field required",
    ),
    (
        "sklearn:digits_images",
        with_layers(CNN, [{"type": "Conv3D", "filters": 2}, *CNN["layers"][1:]]),
        "'GlobalAveragePooling2D'",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            LSTM_REG,
            [{"type": "LSTM", "units": 2, "recurrent_dropout": 0.1}, {"type": "Dense", "units": 1}],
        ),
        "recurrent_dropout: Extra inputs are not permitted",
    ),
    (
        "sklearn:breast_cancer",
        with_layers(
            LSTM_REG,
            [
                {"type": "GRU", "units": 2, "recurrent_activation": "linear"},
                {"type": "Dense", "units": 1},
            ],
        ),
        "recurrent_activation: Input should be 'sigmoid', 'tanh' or 'softmax'",
    ),
]


@pytest.mark.parametrize(("dataset", "spec", "needle"), BAD_SPECS)
def test_every_spec_rule_is_a_422_that_says_what_was_expected(
    client: TestClient, db_url: str, dataset: str, spec: dict[str, Any], needle: str
) -> None:
    before = counts(db_url)
    resp = client.post("/jobs", json={"model_name": "bad", "dataset": dataset, "spec": spec})
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["detail"]
    assert counts(db_url) == before
