"""services/api/routes/jobs.py over HTTP on real SQLite and PostgreSQL: a job that cannot
train on its dataset is refused at the door with a 422 that says what was expected (the
spec's fields, its layers against the data's shape, its fit options), and no job row is
stored; an accepted job is queued and can be cancelled."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.models import TrainingJob
from tests.factories import SPEC, cnn, lstm, mlp, row_counts
from tests.unit.services.api.routes.test_datasets import CSV, upload

CNN = cnn(epochs=2, k_folds=2)
MLP = mlp(4, epochs=2, k_folds=2)
LSTM_REG = lstm(4, steps=10, epochs=2, k_folds=2)
REGRESSION = {
    "task": "regression",
    "loss": "mse",
    "layers": [{"type": "Dense", "units": 1, "activation": "linear"}],
}


def job_body(**spec_changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec.update(spec_changes)
    return {"model_name": "toy", "dataset": "sklearn:breast_cancer", "spec": spec}


def with_layers(
    base: dict[str, Any], layers: list[dict[str, Any]], **changes: Any
) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec["layers"] = layers
    spec.update(changes)
    return spec


def body(dataset: str = "sklearn:breast_cancer", **spec_changes: Any) -> dict[str, Any]:
    return {**job_body(**spec_changes), "model_name": "opts", "dataset": dataset}


def n_jobs(db_url: str) -> int:
    return row_counts(db_url, TrainingJob)[0]


BAD_JOBS = [
    (job_body(layers=[{"type": "Conv9D", "units": 1}]), "layers.0"),
    (
        job_body(layers=[{"type": "Dense", "units": 4, "activation": "relux"}, SPEC["layers"][-1]]),
        "activation",
    ),
    (job_body(optimizer={"name": "adamz"}), "'sgd', 'rmsprop', 'adagrad'"),
    (job_body(loss="hinge"), "loss"),
    (job_body(loss="mse"), "does not fit task 'binary'"),
    (
        job_body(layers=[{"type": "Dense", "units": 3, "activation": "softmax"}]),
        "output layer must be Dense(units=1, activation='sigmoid')",
    ),
    (job_body(k_folds=1), "k_folds"),
    (job_body(k_folds=500), "k_folds"),
    ({**job_body(), "dataset": "sklearn:mnist"}, "no built-in dataset 'mnist'"),
    ({**job_body(), "dataset": "0" * 32}, "no dataset with id"),
    ({**job_body(), "model_name": "bad name!"}, "model_name"),
    ({**job_body(), "surprise": 1}, "surprise"),
    (
        job_body(
            task="multiclass",
            loss="sparse_categorical_crossentropy",
            layers=[{"type": "Dense", "units": 3, "activation": "softmax"}],
        ),
        "the output layer has 3 units but the target has 2 classes",
    ),
]


@pytest.mark.parametrize(("body", "needle"), BAD_JOBS)
def test_bad_jobs_are_refused_at_the_door(
    client: TestClient, db_url: str, body: dict[str, Any], needle: str
) -> None:
    # Materialise the built-in dataset first so "unchanged" compares like with like.
    client.get("/datasets/builtin")
    before = row_counts(db_url)
    resp = client.post("/jobs", json=body)
    assert resp.status_code in (404, 422), resp.text
    assert needle in resp.text
    after = row_counts(db_url)
    # A built-in dataset may be materialised by the first request; jobs never change.
    assert after[1:] == before[1:]


def test_k_larger_than_smallest_class_is_422(client: TestClient, db_url: str) -> None:
    ds = upload(client, CSV).json()
    before = row_counts(db_url)
    resp = client.post("/jobs", json={**job_body(k_folds=4), "dataset": ds["id"]})
    assert resp.status_code == 422
    assert "k_folds=4 is larger than the smallest class" in resp.json()["detail"]
    assert row_counts(db_url) == before


def test_multiclass_output_must_match_the_classes(client: TestClient) -> None:
    body = job_body(
        task="multiclass",
        loss="sparse_categorical_crossentropy",
        layers=[{"type": "Dense", "units": 4, "activation": "softmax"}],
    )
    resp = client.post("/jobs", json={**body, "dataset": "sklearn:iris"})
    assert resp.status_code == 422
    assert "expected Dense(units=3, activation='softmax')" in resp.json()["detail"]


def test_regression_target_cannot_be_classified(client: TestClient) -> None:
    resp = client.post("/jobs", json={**job_body(), "dataset": "sklearn:diabetes"})
    assert resp.status_code == 422
    assert "continuous numbers" in resp.json()["detail"]


def test_accepted_job_is_queued_and_cancellable(client: TestClient) -> None:
    resp = client.post("/jobs", json=job_body())
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    job = client.get(location).json()
    assert job["state"] == "queued"
    assert job["attempt"] == 0
    assert [e["state"] for e in job["events"]] == ["queued"]
    cancelled = client.post(f"/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "only queued or running" in again.json()["detail"]


def test_unknown_things_are_404_with_the_name(client: TestClient) -> None:
    assert "no training job with id 'x'" in client.get("/jobs/x").json()["detail"]
    resp = client.get("/models/ghost/versions/1")
    assert resp.status_code == 404
    assert "no model named 'ghost'" in resp.json()["detail"]


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
    before = row_counts(db_url)
    resp = client.post("/jobs", json={"model_name": "bad", "dataset": dataset, "spec": spec})
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["detail"]
    assert row_counts(db_url) == before


BAD = [
    (
        body(
            reduce_lr_on_plateau={"monitor": "loss"},
            optimizer={
                "name": "adam",
                "learning_rate": {
                    "schedule": "cosine_decay",
                    "initial_learning_rate": 0.01,
                    "decay_steps": 100,
                },
            },
        ),
        "reduce_lr_on_plateau changes a fixed learning rate",
    ),
    (body(early_stopping={"patience": 3}), "needs validation rows: set validation_split"),
    (
        body(reduce_lr_on_plateau={"monitor": "val_accuracy"}),
        "reduce_lr_on_plateau.monitor='val_accuracy' needs validation rows",
    ),
    (body(early_stopping={"monitor": "mae"}), "is not reported for task 'binary'"),
    (body(early_stopping={"patience": 0}, validation_split=0.2), "early_stopping.patience"),
    (body(early_stopping={"min_delta": -1}, validation_split=0.2), "early_stopping.min_delta"),
    (body(reduce_lr_on_plateau={"factor": 1.0}, validation_split=0.2), "factor"),
    (body(reduce_lr_on_plateau={"factor": 0.0}, validation_split=0.2), "factor"),
    (body(validation_split=0.5), "validation_split"),
    (body(test_split=-0.1), "test_split"),
    (body(test_split=0.5), "test_split"),
    (body(class_weight="balanced", oversample=True), "choose one of them"),
    (body(class_weight="uniform"), "class_weight"),
    (body(class_weight={"0": 1.0, "1": -2.0}), "class_weight"),
    (body(class_weight={"0": 1.0, "7": 2.0}), "unknown: ['7'], missing: ['1']"),
    (body("sklearn:diabetes", oversample=True, **REGRESSION), "task 'regression' has no classes"),
    (
        body("sklearn:diabetes", class_weight="balanced", **REGRESSION),
        "task 'regression' has no classes",
    ),
    (body("sklearn:iris", k_folds=50, test_split=0.4), "after test_split=0.4"),
    (body("sklearn:iris", k_folds=2, test_split=0.01), "fewer than the 3 classes"),
    (
        body("sklearn:iris", k_folds=2, validation_split=0.01),
        "validation_split=0.01 cannot hold out a row of every class",
    ),
]


@pytest.mark.parametrize(("request_body", "needle"), BAD)
def test_bad_fit_options_are_422_and_store_nothing(
    client: TestClient, db_url: str, request_body: dict[str, Any], needle: str
) -> None:
    client.get("/datasets/builtin")
    before = n_jobs(db_url)
    if request_body["dataset"] == "sklearn:iris":
        request_body["spec"].update(
            task="multiclass",
            loss="sparse_categorical_crossentropy",
            layers=[{"type": "Dense", "units": 3, "activation": "softmax"}],
        )
    resp = client.post("/jobs", json=request_body)
    assert resp.status_code == 422, resp.text
    assert needle in resp.text
    assert n_jobs(db_url) == before


def test_good_fit_options_are_accepted_as_sent(client: TestClient) -> None:
    options = {
        "early_stopping": {"monitor": "val_loss", "patience": 5, "restore_best_weights": True},
        "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 2},
        "validation_split": 0.2,
        "class_weight": {"0": 2.0, "1": 1.0},
        "test_split": 0.25,
    }
    resp = client.post("/jobs", json=body(**options))
    assert resp.status_code == 202, resp.text
    job = client.get(resp.headers["location"]).json()
    assert job["spec"]["class_weight"] == {"0": 2.0, "1": 1.0}
    assert job["spec"]["early_stopping"]["patience"] == 5
    assert job["spec"]["reduce_lr_on_plateau"]["min_lr"] == 0.0
    assert job["spec"]["test_split"] == 0.25


AND_GATE = b"a,b,label\n0,0,0\n0,1,0\n1,0,0\n1,1,1\n"


def test_a_gate_too_small_to_fold_is_pointed_at_no_cross_validation(
    client: TestClient, db_url: str
) -> None:
    ds = upload(client, AND_GATE).json()
    gate = mlp(4, epochs=200)
    refused = client.post("/jobs", json={"model_name": "and", "dataset": ds["id"], "spec": gate})
    assert refused.status_code == 422
    assert '"cross_validation": false' in refused.json()["detail"]
    before = row_counts(db_url)
    spec = {**gate, "cross_validation": False}
    accepted = client.post("/jobs", json={"model_name": "and", "dataset": ds["id"], "spec": spec})
    assert accepted.status_code == 202, accepted.text
    job = client.get(f"/jobs/{accepted.json()['id']}").json()
    assert job["spec"]["cross_validation"] is False
    assert row_counts(db_url)[1] == before[1] + 1
