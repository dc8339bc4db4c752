"""Named-feature JSON predictions: rows of {feature: value} in, labels or values out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from core.vocabulary import BINARY_THRESHOLD, DataKind, Task
from services.openapi import ref
from services.predict.access import documented
from services.predict.errors import InferRequestInvalid, RowsInvalid
from services.predict.model import OnnxModel
from services.predict.responses import json_response
from services.predict.v2 import ErrorBody, errors, resolve

router = APIRouter(tags=["predict"])


class ClassPrediction(BaseModel):
    label: int | str
    probabilities: dict[str, float]


class ValuePrediction(BaseModel):
    value: float


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    provider: str
    predictions: list[ClassPrediction | ValuePrediction]


class PredictRequest(BaseModel):
    """Documented only: the body is parsed by hand (`_rows_to_array`)."""

    rows: list[dict[str, float]] = Field(
        min_length=1, description="One object per row: every feature the model takes, by name."
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PredictResponse},
    **errors(400, 401, 403, 404, 413, 422, 429, 500, 503),
    400: {
        "model": ErrorBody,
        "description": "The body is not JSON with a 'rows' list, or the "
        "model does not take rows of named features.",
    },
}
_DOC = """Predict from rows of named features: `{"rows": [{"<feature>": <number>, ...}, ...]}`.

Every feature the model was trained on is required in every row, as a number; a
missing or unknown feature is refused with a message listing the expected ones.
Classifiers answer `{"label", "probabilities": {"<label>": p}}` per row (the label with
the highest probability), regressors `{"value"}`. `provider` is the ONNX Runtime
execution provider the model really runs on.
"""


_ROUTE: dict[str, Any] = {
    "description": _DOC,
    "responses": _RESPONSES,
    "dependencies": [documented],
    # Read by hand, as the infer body is: described here for clients.
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref(PredictRequest)}},
        }
    },
}


@router.post("/predict/{name}", summary="Predict with the newest version", **_ROUTE)
async def predict(name: str, request: Request) -> Response:
    return await _predict(request, name, None)


@router.post("/predict/{name}/versions/{version}", summary="Predict with one version", **_ROUTE)
async def predict_version(name: str, version: str, request: Request) -> Response:
    return await _predict(request, name, version)


async def _predict(request: Request, name: str, version: str | None) -> Response:
    body = await request.body()
    model = await resolve(request, name, version)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferRequestInvalid(f"request body is not valid JSON: {exc}") from exc
    x = _rows_to_array(payload, model)
    y = model.predict(x)
    return json_response(
        {
            "model_name": model.name,
            "model_version": model.version,
            "provider": model.provider,
            "predictions": _predictions(model, y),
        }
    )


def _rows_to_array(payload: Any, model: OnnxModel) -> np.ndarray:
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise InferRequestInvalid('request body must be {"rows": [{"<feature>": <number>, ...}]}')
    if set(payload) != {"rows"}:
        raise RowsInvalid(f"unknown fields {sorted(set(payload) - {'rows'})}; only 'rows'")
    if model.kind != DataKind.TABLE:
        raise InferRequestInvalid(
            f"model '{model.name}' takes {model.kind} inputs of shape {model.input_shape}, "
            f"not rows of named features; use POST /v2/models/{model.name}/infer",
        )
    rows: list[Any] = payload["rows"]
    if not rows:
        raise RowsInvalid("'rows' is empty; send at least one row")
    names = model.feature_names
    expected = set(names)
    matrix: list[list[float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowsInvalid(f"row {i} must be an object of feature: value")
        if row.keys() != expected:
            missing = [f for f in names if f not in row]
            unknown = sorted(k for k in row if k not in expected)
            problems = []
            if missing:
                problems.append(f"missing features {missing}")
            if unknown:
                problems.append(f"unknown features {unknown}")
            raise RowsInvalid(f"row {i}: {'; '.join(problems)}; expected features {names}")
        values = [row[f] for f in names]
        for feature, value in zip(names, values, strict=True):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise RowsInvalid(
                    f"row {i}: feature '{feature}' must be a finite number, got {value!r}"
                )
        matrix.append(values)
    return np.asarray(matrix, dtype=np.float32)


def _predictions(model: OnnxModel, y: np.ndarray) -> list[dict[str, Any]]:
    if model.task == Task.REGRESSION:
        if y.shape[1] == 1:
            return [{"value": v} for v in y[:, 0].tolist()]
        return [{"values": row} for row in y.tolist()]
    if model.task == Task.BINARY:
        labels = model.class_labels or [0, 1]
        predictions = []
        for p in y[:, 0].tolist():
            predictions.append(
                {
                    "label": labels[1] if p >= BINARY_THRESHOLD else labels[0],
                    "probabilities": {str(labels[0]): 1.0 - p, str(labels[1]): p},
                }
            )
        return predictions
    labels = model.class_labels or list(range(y.shape[1]))
    keys = [str(label) for label in labels]
    winners = y.argmax(axis=1).tolist()
    return [
        {"label": labels[k], "probabilities": dict(zip(keys, row, strict=True))}
        for k, row in zip(winners, y.tolist(), strict=True)
    ]
