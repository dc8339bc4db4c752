"""services/predict/friendly.py: POST /predict/{model} with rows of named features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.unit.services.predict.models import BIN_V1, BIN_V2, IRIS, REG, ROWS, rows_payload


def test_friendly_binary_labels_and_probabilities(client: TestClient) -> None:
    response = client.post("/predict/cancer", json=rows_payload(ROWS))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("cancer", 2)
    assert body["provider"] == "CPUExecutionProvider"
    p = BIN_V2.expected(ROWS)[:, 0]
    for prediction, p1 in zip(body["predictions"], p, strict=True):
        assert prediction["label"] == ("malignant" if p1 > 0.5 else "benign")
        assert prediction["probabilities"]["malignant"] == pytest.approx(p1, abs=1e-5)
        assert prediction["probabilities"]["benign"] == pytest.approx(1 - p1, abs=1e-5)


def test_friendly_explicit_version(client: TestClient) -> None:
    response = client.post("/predict/cancer/versions/1", json=rows_payload(ROWS[:1]))
    assert response.json()["model_version"] == 1
    p = BIN_V1.expected(ROWS[:1])[0, 0]
    assert response.json()["predictions"][0]["probabilities"]["malignant"] == pytest.approx(
        p, abs=1e-5
    )


def test_friendly_multiclass_and_regression(client: TestClient) -> None:
    iris = client.post("/predict/iris", json=rows_payload(ROWS)).json()
    expected = IRIS.expected(ROWS)
    for prediction, probs in zip(iris["predictions"], expected, strict=True):
        assert prediction["label"] == int(probs.argmax())
        got = [prediction["probabilities"][str(label)] for label in (0, 1, 2)]
        np.testing.assert_allclose(got, probs, atol=1e-5)

    diabetes = client.post("/predict/diabetes", json=rows_payload(ROWS)).json()
    got = [p["value"] for p in diabetes["predictions"]]
    np.testing.assert_allclose(got, REG.expected(ROWS)[:, 0], atol=1e-4)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"age": 1, "height": 2, "weight": 3}],
            "row 0: missing features ['score']; expected features "
            "['age', 'height', 'weight', 'score']",
        ),
        (
            [{"age": 1, "height": 2, "weight": 3, "score": 4, "bmi": 5}],
            "row 0: unknown features ['bmi']; expected features",
        ),
        (
            [{"age": 1, "height": 2, "weight": 3, "score": 4}, {"age": 1}],
            "row 1: missing features ['height', 'weight', 'score']",
        ),
        (
            [{"age": 1, "height": 2, "weight": "heavy", "score": 4}],
            "row 0: feature 'weight' must be a finite number, got 'heavy'",
        ),
        (
            [{"age": 1, "height": 2, "weight": True, "score": 4}],
            "row 0: feature 'weight' must be a finite number, got True",
        ),
        ([], "'rows' is empty"),
    ],
)
def test_friendly_refuses_bad_rows(client: TestClient, rows: list[Any], message: str) -> None:
    response = client.post("/predict/cancer", json={"rows": rows})
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_friendly_refuses_a_body_without_rows(client: TestClient) -> None:
    response = client.post("/predict/cancer", json=[1, 2])
    assert response.status_code == 400
    assert "rows" in response.json()["error"]


def test_friendly_route_refuses_an_image_model(img_client: TestClient) -> None:
    response = img_client.post("/predict/img", json={"rows": [{"a": 1}]})
    assert response.status_code == 400
    assert "takes image inputs of shape [-1, 4, 4, 1]" in response.json()["error"]
    assert "/v2/models/img/infer" in response.json()["error"]


def test_a_binary_label_is_served_at_the_threshold_the_metrics_count() -> None:
    from types import SimpleNamespace

    from core.vocabulary import Task
    from services.predict.friendly import _predictions
    from training.metrics import classification_metrics

    model = SimpleNamespace(task=Task.BINARY, class_labels=["benign", "malignant"])
    p = np.array([[0.5], [0.4999]], np.float32)
    served = [row["label"] for row in _predictions(model, p)]  # type: ignore[arg-type]
    assert served == ["malignant", "benign"]
    # The stored metrics count the same rows as the same labels: both right.
    assert classification_metrics(np.array([1, 0]), p, n_classes=2)["accuracy"] == 1.0
