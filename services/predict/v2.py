"""Open Inference Protocol v2 (KServe / Triton) routes, with the binary tensor data extension.

Bodies are parsed from raw bytes rather than through FastAPI's body models, for two
reasons: `tritonclient.http` sends JSON without a Content-Type header (and binary
tensors after the JSON header), and pydantic validation of every number in `data`
costs more than running the model.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from core.errors import ErrorKind, KilnError
from services.openapi import ref
from services.predict import infer as core
from services.predict.access import documented
from services.predict.cache import ModelCache
from services.predict.model import OnnxModel
from services.predict.responses import error_response, json_response

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
# Where a route leaves the model it served, for the metrics middleware's labels. Only
# resolved models are recorded, so clients cannot create label values by asking for names.
MODEL_SCOPE_KEY = "kiln.model"
REF_SCOPE_KEY = "kiln.ref"
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


class InferInput(BaseModel):
    name: str = Field(description="The model's input name (`features`).")
    shape: list[int] = Field(description="`[n, F]`, `[n, H, W, C]` or `[n, steps, F]`.")
    datatype: str = Field(description="An OIP datatype: FP32, FP64, FP16, INT64, …, BOOL.")
    data: list[Any] | None = Field(
        default=None,
        description="Numbers, flat (row-major) or nested; left out when "
        "`parameters.binary_data_size` says the bytes follow the JSON.",
    )
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(
        default=None, description='`{"binary_data": true}` for raw little-endian bytes.'
    )


class InferRequest(BaseModel):
    """The OIP infer request. Documented only: the body is parsed by hand (services/predict/
    infer.py), with or without a Content-Type."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `{"error": ...}` answers a route can give, with what each means here."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in statuses}


_MEANING = {
    400: "The request does not fit the model or the protocol.",
    401: "No API key, or one that is not known (when the predictor requires keys).",
    403: "The key lacks `predict` or this model.",
    404: "No such model, version or alias.",
    413: "The body is over PREDICT_MAX_REQUEST_BYTES.",
    422: "A row misses, adds or mistypes a feature.",
    429: "The key sent more than PREDICT_RATE_LIMIT; Retry-After says when to try again.",
    500: "The version cannot be served (its files or graph), or its output is not finite.",
    503: "PREDICT_MAX_IN_FLIGHT requests in flight, or the registry does not answer; "
    "Retry-After says when to try again.",
}
# Every path that names a model: the key check, its rate limit, the lookup, the in-flight bound.
_ERRORS = errors(400, 401, 403, 404, 429, 500, 503)


def model_cache(request: Request) -> ModelCache:
    return cast(ModelCache, request.app.state.model_cache)


async def resolve(request: Request, name: str, version: str | None) -> OnnxModel:
    """The model a path names: `name`, `name@alias`, or `name` and a version number."""
    ref, number = core.parse_target(name, version)
    model = await model_cache(request).get(ref, number)
    request.scope[MODEL_SCOPE_KEY] = (model.name, model.version)
    request.scope[REF_SCOPE_KEY] = ref if number is None else None
    return model


_BINARY = {"type": "string", "format": "binary"}
_INFER_DOC = """Run the model on one input tensor.

`{name}` is a model name (its newest version that is not archived) or `name@alias`
(`iris@production`), or a name with `/versions/{version}`.

The body is `{"id"?, "parameters"?, "inputs": [{"name": "features", "shape": [n, ...],
"datatype": "FP32", "data": [...]}], "outputs"?: [{"name": "output"}]}`: one input with
the model's shape (`[n, F]` for tables, `[n, H, W, C]` for images, `[n, steps, F]` for
sequences); `data` may be flat (row-major) or nested. Any OIP numeric datatype is
accepted and converted to the model's datatype when no value changes (FP16/FP64 floats
that fit, integers up to 2**24, BOOL), else refused with a 400 that names the datatype
the model takes. Content-Type is not required.

Binary tensor data extension: with an `Inference-Header-Content-Length` header, the
first that many bytes are the JSON header and an input with
`parameters.binary_data_size` takes its little-endian bytes from what follows. Outputs
come back binary when `outputs[].parameters.binary_data` (or the request's
`parameters.binary_data_output`) is true.
"""


_INFER_ROUTE: dict[str, Any] = {
    "description": _INFER_DOC,
    "responses": {
        200: {
            "model": InferResponse,
            "description": "JSON; or, when binary outputs were asked for, the JSON header "
            "(Inference-Header-Content-Length bytes) followed by the outputs' bytes.",
            "content": {"application/octet-stream": {"schema": _BINARY}},
        },
        **_ERRORS,
        **errors(413),
    },
    "dependencies": [documented],
    # The body is read by hand (the fast path): described here for clients.
    "openapi_extra": {
        "parameters": [
            {
                "in": "header",
                "name": "Inference-Header-Content-Length",
                "required": False,
                "description": "Binary tensor data extension: the length of the JSON header "
                "that starts the body; the input's bytes follow it.",
                "schema": {"type": "integer", "minimum": 1},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref(InferRequest)},
                "application/octet-stream": {
                    "schema": _BINARY,
                    "description": "The JSON header, then the input's little-endian bytes.",
                },
            },
        },
    },
}


# Declared first because routes are matched in order and these carry nearly all traffic.
@router.post("/v2/models/{name}/infer", summary="Infer with the newest version", **_INFER_ROUTE)
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer", summary="Infer with one version", **_INFER_ROUTE
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


def _metadata(request: Request, model: OnnxModel) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "version": model.version,
        "execution_provider": model.provider,
        "kind": model.kind,
        "task": model.task,
        "feature_names": model.feature_names or None,
        "class_labels": model.class_labels,
        "target": model.signature.get("target"),
        "dynamic_batching": model.batcher is not None,
    }
    ref = request.scope.get(REF_SCOPE_KEY)
    if ref is not None:
        if ref[1] is not None:
            parameters["alias"] = ref[1]
        failed = model_cache(request).ref_error(ref)
        if failed is not None:
            parameters["pending_version"] = failed[0]
            parameters["pending_error"] = failed[1]
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
        "parameters": parameters,
    }


@router.get(
    "/v2/models/{name}",
    summary="Metadata of the newest version",
    responses={200: {"model": ModelMetadata}, **_ERRORS},
    dependencies=[documented],
)
async def model_metadata(name: str, request: Request) -> Response:
    """Inputs, outputs and signature of what `name` or `name@alias` serves, loading it if needed.

    `parameters.execution_provider` is the provider ONNX Runtime really runs the model
    on, which is `CPUExecutionProvider` when CUDA was asked for but is not usable. When
    the alias (or the newest version) moved to a version that cannot be served, the old
    one keeps serving and `parameters.pending_version` / `pending_error` say why.
    """
    return json_response(_metadata(request, await resolve(request, name, None)))


@router.get(
    "/v2/models/{name}/versions/{version}",
    summary="Metadata of one version",
    responses={200: {"model": ModelMetadata}, **_ERRORS},
    dependencies=[documented],
)
async def model_version_metadata(name: str, version: str, request: Request) -> Response:
    """Inputs, outputs and signature of one version of `name`, loading it if needed."""
    return json_response(_metadata(request, await resolve(request, name, version)))


async def _model_ready(request: Request, name: str, version: str | None) -> Response:
    try:
        model = await resolve(request, name, version)
    except KilnError as exc:
        if exc.kind in (ErrorKind.INTERNAL, ErrorKind.UNAVAILABLE):
            # Known but not servable here: not ready, which a readiness probe reads as 503.
            return error_response(exc, 503)
        raise
    return json_response({"name": model.name, "version": str(model.version), "ready": True})


@router.get(
    "/v2/models/{name}/ready",
    summary="Readiness of the newest version",
    responses={200: {"model": ModelReadyBody}, **errors(400, 401, 403, 404, 429, 503)},
    dependencies=[documented],
)
async def model_ready(name: str, request: Request) -> Response:
    """200 when the newest version is loaded or loads now; 404 if unknown; 503 if it cannot load."""
    return await _model_ready(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    summary="Readiness of one version",
    responses={200: {"model": ModelReadyBody}, **errors(400, 401, 403, 404, 429, 503)},
    dependencies=[documented],
)
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    """200 when the version is loaded or loads now; 404 if unknown; 503 if it cannot load."""
    return await _model_ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    # Normally answered by the ASGI fast path (serving.py) before routing; the same code.
    body = await request.body()
    model = await resolve(request, name, version)
    content, content_type, json_length = await core.run(
        model, body, request.headers.get(core.HEADER_LENGTH)
    )
    headers = {core.HEADER_LENGTH: str(json_length)} if json_length is not None else None
    return Response(content, media_type=content_type, headers=headers)
