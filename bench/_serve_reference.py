"""The bare reference the bench compares Kiln with: pydantic-parsed OIP body, ORT, JSON.

`uvicorn bench._serve_reference:app --factory`, model from KILN_BENCH_ONNX. Same ORT
session options as Kiln so the difference is the HTTP layer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def app() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        os.environ["KILN_BENCH_ONNX"], sess_options=options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    api = FastAPI()

    @api.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @api.post("/v2/models/{name}/infer")
    async def infer(name: str, request: InferRequest) -> dict[str, Any]:
        tensor = request.inputs[0]
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        y = session.run(None, {input_name: x})[0]
        return {
            "model_name": name,
            "outputs": [
                {
                    "name": "output",
                    "datatype": "FP32",
                    "shape": list(y.shape),
                    "data": y.ravel().tolist(),
                }
            ],
        }

    return api
