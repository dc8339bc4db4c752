"""Fit options (early stopping, plateau, validation and test splits, class imbalance) are
checked at the door: a combination that cannot work is a 422 naming the field, and no
job is stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry.db import make_engine
from registry.models import TrainingJob
from tests.factories import SPEC


def n_jobs(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(TrainingJob)) or 0
    engine.dispose()
    return n


def body(dataset: str = "sklearn:breast_cancer", **spec_changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec.update(spec_changes)
    return {"model_name": "opts", "dataset": dataset, "spec": spec}


REGRESSION = {
    "task": "regression",
    "loss": "mse",
    "layers": [{"type": "Dense", "units": 1, "activation": "linear"}],
}

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
