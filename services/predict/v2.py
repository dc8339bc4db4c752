"""Open Inference Protocol v2 (KServe / Triton) routes, with the binary tensor data extension.

Bodies are parsed from raw bytes rather than through FastAPI's body models, for two
reasons: `tritonclient.http` sends JSON without a Content-Type header (and binary
tensors after the JSON header), and pydantic validation of every number in `data`
costs more than running the model.
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from services.predict.runtime import InferenceError, ModelCache, OnnxModel

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
# Where a route leaves the model it served, for the metrics middleware's labels. Only
# resolved models are recorded, so clients cannot create label values by asking for names.
MODEL_SCOPE_KEY = "kiln.model"
HEADER_LENGTH = "inference-header-content-length"

# JSON numbers of every accepted type are read straight into float32, the model's input
# type: FP64 features lose precision beyond ~7 significant digits and integers beyond
# 2**24, which is far below the noise of any feature a Keras MLP is trained on.
_BINARY_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
}
_ACCEPTED = "send FP32; FP64, INT32 and INT64 are converted to FP32"

router = APIRouter(tags=["v2"])


class ErrorBody(BaseModel):
    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveBody(BaseModel):
    live: bool


class ReadyBody(BaseModel):
    ready: bool


class ModelReadyBody(BaseModel):
    name: str
    version: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The request does not fit the model."},
    404: {"model": ErrorBody, "description": "No such model or version."},
}


def json_response(content: Any, status_code: int = 200) -> Response:
    # Serialised here rather than by FastAPI's encoder, which walks every float in Python.
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status_code, media_type="application/json")


def model_cache(request: Request) -> ModelCache:
    return cast(ModelCache, request.app.state.model_cache)


def parse_version(raw: str) -> int:
    try:
        version = int(raw)
    except ValueError:
        version = 0
    if version < 1:
        raise InferenceError(400, f"version must be a positive integer, got '{raw}'")
    return version


async def resolve(request: Request, name: str, version: str | None) -> OnnxModel:
    model = await model_cache(request).get(
        name, parse_version(version) if version is not None else None
    )
    request.scope[MODEL_SCOPE_KEY] = (model.name, model.version)
    return model


_INFER_DOC = """Run the model on one input tensor.

The body is `{"id"?, "parameters"?, "inputs": [{"name": "features", "shape": [n, F],
"datatype": "FP32", "data": [...]}], "outputs"?: [{"name": "output"}]}`; `data` may be
flat (row-major) or nested. FP64, INT32 and INT64 inputs are converted to FP32; BOOL
and other types are refused. Content-Type is not required.

Binary tensor data extension: with an `Inference-Header-Content-Length` header, the
first that many bytes are the JSON header and an input with
`parameters.binary_data_size` takes its little-endian bytes from what follows. Outputs
come back binary when `outputs[].parameters.binary_data` (or the request's
`parameters.binary_data_output`) is true.
"""


# Declared first because routes are matched in order and these carry nearly all traffic.
@router.post(
    "/v2/models/{name}/infer",
    summary="Infer with the newest version",
    description=_INFER_DOC,
    responses={200: {"model": InferResponse}, **_ERRORS},
)
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="Infer with one version",
    description=_INFER_DOC,
    responses={200: {"model": InferResponse}, **_ERRORS},
)
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


@router.get("/v2", summary="Server metadata", responses={200: {"model": ServerMetadata}})
async def server_metadata(request: Request) -> Response:
    """The server's name, version and the protocol extensions it supports."""
    return json_response({"name": "kiln", "version": request.app.version, "extensions": EXTENSIONS})


@router.get("/v2/health/live", summary="Liveness", responses={200: {"model": LiveBody}})
async def live() -> Response:
    """200 while the process can answer HTTP at all."""
    return json_response({"live": True})


@router.get(
    "/v2/health/ready",
    summary="Readiness",
    responses={200: {"model": ReadyBody}, 503: {"model": ReadyBody}},
)
async def ready(request: Request) -> Response:
    """200 once the server has started and can load models, 503 before that and on shutdown."""
    is_ready = bool(getattr(request.app.state, "ready", False))
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


def _metadata(model: OnnxModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": PLATFORM,
        "inputs": [
            {"name": model.input_name, "datatype": model.input_datatype, "shape": model.input_shape}
        ],
        "outputs": [
            {
                "name": model.output_name,
                "datatype": model.output_datatype,
                "shape": model.output_shape,
            }
        ],
        "parameters": {
            "version": model.version,
            "execution_provider": model.provider,
            "task": model.task,
            "feature_names": model.feature_names,
            "class_labels": model.class_labels,
            "target": model.signature.get("target"),
        },
    }


@router.get(
    "/v2/models/{name}",
    summary="Metadata of the newest version",
    responses={200: {"model": ModelMetadata}, **_ERRORS},
)
async def model_metadata(name: str, request: Request) -> Response:
    """Inputs, outputs and signature of the newest version of `name`, loading it if needed.

    `parameters.execution_provider` is the provider ONNX Runtime really runs the model
    on, which is `CPUExecutionProvider` when CUDA was asked for but is not usable.
    """
    return json_response(_metadata(await resolve(request, name, None)))


@router.get(
    "/v2/models/{name}/versions/{version}",
    summary="Metadata of one version",
    responses={200: {"model": ModelMetadata}, **_ERRORS},
)
async def model_version_metadata(name: str, version: str, request: Request) -> Response:
    """Inputs, outputs and signature of one version of `name`, loading it if needed."""
    return json_response(_metadata(await resolve(request, name, version)))


async def _model_ready(request: Request, name: str, version: str | None) -> Response:
    try:
        model = await resolve(request, name, version)
    except InferenceError as exc:
        if exc.status_code >= 500:
            return json_response({"error": exc.message}, 503)
        raise
    return json_response({"name": model.name, "version": str(model.version), "ready": True})


@router.get(
    "/v2/models/{name}/ready",
    summary="Readiness of the newest version",
    responses={200: {"model": ModelReadyBody}, **_ERRORS, 503: {"model": ErrorBody}},
)
async def model_ready(name: str, request: Request) -> Response:
    """200 when the newest version is loaded or loads now; 404 if unknown; 503 if it cannot load."""
    return await _model_ready(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    summary="Readiness of one version",
    responses={200: {"model": ModelReadyBody}, **_ERRORS, 503: {"model": ErrorBody}},
)
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    """200 when the version is loaded or loads now; 404 if unknown; 503 if it cannot load."""
    return await _model_ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    body = await request.body()
    model = await resolve(request, name, version)
    header, tail = _split_body(body, request.headers.get(HEADER_LENGTH))
    try:
        payload = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InferenceError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InferenceError(400, "request body must be a JSON object with 'inputs'")
    x = _input_array(payload, model, tail)
    y = model.predict(x)
    return _infer_response(payload, model, y)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 < n <= len(body):
        raise InferenceError(
            400,
            f"Inference-Header-Content-Length must be an integer between 1 and the body "
            f"length {len(body)}, got '{header_length}'",
        )
    return body[:n], body[n:]


def _input_array(payload: dict[str, Any], model: OnnxModel, tail: bytes) -> np.ndarray:
    expected_inputs = f"model '{model.name}' takes one input, '{model.input_name}'"
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InferenceError(400, f"request needs 'inputs': a list of tensors; {expected_inputs}")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        names = [t.get("name") if isinstance(t, dict) else t for t in inputs]
        raise InferenceError(400, f"{expected_inputs}, got {len(inputs)} inputs: {names}")
    tensor: dict[str, Any] = inputs[0]
    if tensor.get("name") != model.input_name:
        raise InferenceError(400, f"unknown input {tensor.get('name')!r}; {expected_inputs}")
    label = f"input '{model.input_name}'"

    datatype = tensor.get("datatype")
    if datatype not in _BINARY_DTYPES:
        raise InferenceError(400, f"{label} datatype {datatype!r} is not supported; {_ACCEPTED}")

    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InferenceError(400, f"{label} shape must be a list of integers, got {shape!r}")
    if len(shape) != 2 or shape[0] < 1 or shape[1] != model.n_features:
        raise InferenceError(400, f"{label} expects shape {model.input_shape}, got {shape}")
    count = shape[0] * shape[1]

    parameters = tensor.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None:
        dtype = _BINARY_DTYPES[datatype]
        needed = count * dtype.itemsize
        if binary_size != needed or len(tail) < needed:
            raise InferenceError(
                400,
                f"{label} of shape {shape} and datatype {datatype} needs {needed} bytes, "
                f"got binary_data_size {binary_size!r} with {len(tail)} bytes after the header",
            )
        x = np.frombuffer(tail, dtype=dtype, count=count).reshape(shape)
    else:
        data = tensor.get("data")
        if data is None:
            raise InferenceError(400, f"{label} has neither 'data' nor binary_data_size")
        try:
            x = np.asarray(data, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InferenceError(
                400, f"{label} data must be numbers in flat or nested lists: {exc}"
            ) from exc
        if x.size != count:
            raise InferenceError(
                400, f"{label} shape {shape} needs {count} values, got {x.size} in 'data'"
            )
        x = x.reshape(shape)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InferenceError(400, f"{label} contains NaN, infinity or null values")
    return x


def _infer_response(payload: dict[str, Any], model: OnnxModel, y: np.ndarray) -> Response:
    if not np.isfinite(y).all():
        raise InferenceError(500, f"model '{model.name}' produced NaN or infinite outputs")
    request_parameters = payload.get("parameters")
    binary = bool(
        isinstance(request_parameters, dict) and request_parameters.get("binary_data_output")
    )
    requested = payload.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
            raise InferenceError(400, "'outputs' must be a list of objects with a 'name'")
        for output in requested:
            if output.get("name") != model.output_name:
                raise InferenceError(
                    400,
                    f"unknown output {output.get('name')!r}; model '{model.name}' has one "
                    f"output, '{model.output_name}'",
                )
            output_parameters = output.get("parameters")
            if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
                binary = bool(output_parameters["binary_data"])

    tensor: dict[str, Any] = {
        "name": model.output_name,
        "datatype": "FP32",
        "shape": list(y.shape),
    }
    content: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if "id" in payload:
        content["id"] = payload["id"]
    content["outputs"] = [tensor]
    if not binary:
        tensor["data"] = y.ravel().tolist()
        return json_response(content)

    raw = y.astype("<f4", copy=False).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(content, separators=(",", ":")).encode()
    return Response(
        header + raw,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
