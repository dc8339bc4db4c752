"""services/predict/batching.py: concurrent requests for one model share one run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from services.predict.app import create_app
from services.predict.batching import Batcher
from services.predict.model import OnnxModel
from services.predict.source import ResolvedModel
from tests.unit.services.predict.models import (
    IRIS,
    ROWS,
    MemorySource,
    infer_body,
    make_settings,
    metric_sample,
    outputs_of,
)


def test_dynamic_batching_serves_concurrent_requests_with_one_run() -> None:
    model = OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, IRIS.signature), device="cpu")
    batches: list[tuple[int, int]] = []
    batcher = Batcher(
        model, max_delay_s=0.05, max_size=64, on_batch=lambda _m, n, rows: batches.append((n, rows))
    )
    rows = [ROWS[i : i + 1] for i in range(3)] + [ROWS]

    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(batcher.submit(x) for x in rows)))

    results = asyncio.run(main())
    assert batches == [(4, 6)]
    for x, y in zip(rows, results, strict=True):
        np.testing.assert_allclose(y, IRIS.expected(x), atol=1e-5)


def test_dynamic_batching_through_the_app(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_batch_max_delay_us=200, predict_batch_models="iris")
    with TestClient(create_app(settings, source=source)) as c:
        response = c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        np.testing.assert_allclose(outputs_of(response), IRIS.expected(ROWS), atol=1e-5)
        assert c.get("/v2/models/iris").json()["parameters"]["dynamic_batching"] is True
        assert c.get("/v2/models/cancer").json()["parameters"]["dynamic_batching"] is False
        text = c.get("/metrics").text
        assert metric_sample(text, "kiln_predict_batch_rows_count", {"model": "iris"}) == 1
        assert metric_sample(text, "kiln_predict_batch_rows_sum", {"model": "iris"}) == 3
