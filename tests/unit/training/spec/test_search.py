"""training/spec/search.py: a trial's spec from its parameters, and the door's checks of
a space (over the API: 422 naming the dimension)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from core.vocabulary import DataKind
from services.settings import ApiSettings
from tests.factories import cnn, lstm, mlp, model_spec
from training.spec.search import SearchSpace, corners, trial_spec


def test_structural_dimensions_rebuild_the_hidden_layers_and_keep_the_output() -> None:
    base = model_spec(mlp(16, 0.1, 8))
    spec = trial_spec(
        base, {"layers": 3, "units": 5, "activation": "tanh", "dropout": 0.2}, kind=DataKind.TABLE
    )
    types = [(layer.type, getattr(layer, "units", None)) for layer in spec.layers]
    assert types == [("Dense", 5), ("Dropout", None)] * 3 + [("Dense", 1)]
    assert spec.layers[-1] == base.layers[-1]
    assert {getattr(layer, "activation", "tanh") for layer in spec.layers[:-1]} == {"tanh"}


def test_fit_dimensions_replace_their_fields_and_a_new_optimizer_keeps_the_rate() -> None:
    base = model_spec(mlp(8, optimizer={"name": "adam", "learning_rate": 0.01, "beta_1": 0.8}))
    spec = trial_spec(
        base, {"optimizer": "rmsprop", "batch_size": 64, "epochs": 7}, kind=DataKind.TABLE
    )
    assert spec.optimizer.name == "rmsprop"
    assert spec.optimizer.learning_rate == 0.01
    assert (spec.batch_size, spec.epochs) == (64, 7)
    assert spec.layers == base.layers  # no structural dimension: the base's layers
    tuned = trial_spec(base, {"learning_rate": 0.003}, kind=DataKind.TABLE)
    assert tuned.optimizer.model_dump() == {**base.optimizer.model_dump(), "learning_rate": 0.003}


def test_families_follow_the_data_kind() -> None:
    image = trial_spec(
        model_spec(cnn()), {"family": "cnn", "layers": 2, "units": 4}, kind=DataKind.IMAGE
    )
    assert [layer.type for layer in image.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense",
    ]  # fmt: skip
    flat = trial_spec(model_spec(cnn()), {"family": "mlp"}, kind=DataKind.IMAGE)
    assert flat.layers[0].type == "Flatten"
    seq = trial_spec(model_spec(lstm()), {"family": "gru", "layers": 2}, kind=DataKind.SEQUENCE)
    assert [(layer.type, getattr(layer, "return_sequences", None)) for layer in seq.layers] == [
        ("GRU", True), ("GRU", False), ("Dense", None),
    ]  # fmt: skip
    conv = trial_spec(model_spec(lstm()), {"family": "conv1d"}, kind=DataKind.SEQUENCE)
    assert [layer.type for layer in conv.layers][-2:] == ["GlobalAveragePooling1D", "Dense"]


def test_corners_reach_every_choice_and_both_ends_of_each_range() -> None:
    space = SearchSpace.model_validate(
        {"family": ["cnn", "mlp"], "layers": {"low": 1, "high": 3}, "dropout": [0.0, 0.3]}
    )
    labels = [label for label, _ in corners(space)]
    assert labels == [
        "family='cnn', layers=1", "family='cnn', layers=3",
        "family='mlp', layers=1", "family='mlp', layers=3",
        "dropout=0.0", "dropout=0.3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("space", "says"),
    [
        ({}, "names no dimension"),
        ({"units": {"low": 8, "high": 4}}, "low (8) is above high (4)"),
        ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "needs low > 0"),
        ({"units": []}, "empty list"),
        ({"depth": [1]}, "Extra inputs"),
    ],
)
def test_a_malformed_space_is_refused(space: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        SearchSpace.model_validate(space)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"space": {"family": ["cnn"]}}, "space.family 'cnn' does not read table data"),
        ({"space": {"units": [4, 0]}}, "space: units=0 gives no valid spec"),
        (
            {"space": {"batch_size": [16, 100000]}},
            "space: batch_size=100000 gives no valid spec",
        ),
        ({"objective": {"metric": "mae"}}, "objective.metric 'mae' is not a score of task"),
        ({"spec": mlp(4, cross_validation=False)}, "spec.cross_validation must be true"),
        ({"dataset": "nope"}, "no dataset"),
    ],
)
def test_the_door_refuses_a_search_that_cannot_run_naming_what(
    own_api: tuple[TestClient, ApiSettings], changes: dict[str, Any], says: str
) -> None:
    client, _ = own_api
    body = {
        "model_name": "s",
        "dataset": "sklearn:breast_cancer",
        "spec": mlp(4, k_folds=3),
        "space": {"units": [4, 8]},
    } | changes
    resp = client.post("/searches", json=body)
    assert resp.status_code in (404, 422), resp.text
    assert says in resp.text, resp.text
    assert client.get("/searches").json()["items"] == []
    assert client.get("/jobs").json()["items"] == []


def test_the_door_refuses_a_space_too_deep_for_the_images(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    resp = client.post(
        "/searches",
        json={
            "model_name": "s",
            "dataset": "sklearn:digits_images",
            "spec": cnn(k_folds=3),
            "space": {"family": ["cnn"], "layers": [1, 5]},
        },
    )
    assert resp.status_code == 422, resp.text
    assert "space: family='cnn', layers=5 cannot train on this dataset" in resp.text
