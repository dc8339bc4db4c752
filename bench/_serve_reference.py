"""The bare reference the benches compare Kiln with: pydantic-parsed OIP body, ORT, JSON.

`uvicorn bench._serve_reference:app --factory`. Serves every `<name>.onnx` in
KILN_BENCH_MODELS_DIR (or the one file KILN_BENCH_ONNX as model KILN_BENCH_MODEL), the
way a user would write it from the FastAPI and ONNX Runtime docs: a pydantic body, one
session per model, the default JSON response. Same ORT session options as Kiln, so the
difference is the HTTP layer. KILN_BENCH_DEVICE=auto asks for CUDA where ORT lists it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    wants_cuda = os.environ.get("KILN_BENCH_DEVICE", "cpu") == "auto"
    if wants_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def app() -> FastAPI:
    if "KILN_BENCH_MODELS_DIR" in os.environ:
        paths = {p.stem: p for p in Path(os.environ["KILN_BENCH_MODELS_DIR"]).glob("*.onnx")}
    else:
        paths = {os.environ.get("KILN_BENCH_MODEL", "mlp"): Path(os.environ["KILN_BENCH_ONNX"])}
    sessions = {name: _session(path) for name, path in paths.items()}
    api = FastAPI()

    @api.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @api.post("/v2/models/{name}/infer")
    async def infer(name: str, request: InferRequest) -> dict[str, Any]:
        session = sessions.get(name)
        if session is None:
            raise HTTPException(404, f"model {name} not found")
        tensor = request.inputs[0]
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        y = session.run(None, {session.get_inputs()[0].name: x})[0]
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
