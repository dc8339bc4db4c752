"""The Open Inference Protocol v2 infer call on raw bytes: parse, check, run, encode.

Shared by the ASGI fast path (services/predict/serving.py) and the documented FastAPI
routes. orjson and hand-written checks against the cached model's signature instead of
pydantic: validating every number of `data` through a model costs more than running the
model, and the checks a client needs (names, shape, datatype, sizes, finite values) are
a few comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from services.predict.errors import InferRequestInvalid, OutputNotFinite
from services.predict.model import DTYPES, OnnxModel
from services.predict.source import Ref

HEADER_LENGTH = "inference-header-content-length"

# JSON data of each datatype must hold these numpy kinds (ints are fine for floats).
_JSON_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}
# Integers that a float type holds exactly: 2**(mantissa bits + 1).
_EXACT_INT = {2: 2**11, 4: 2**24, 8: 2**53}
# Version numbers are 32-bit integer columns in the registry; a larger one names no
# version, and PostgreSQL refuses to compare one with them.
MAX_VERSION = 2**31 - 1


def split_model_name(raw: str) -> Ref:
    """`name@alias` to (name, alias); a plain name to (name, None)."""
    if "\x00" in raw:
        raise InferRequestInvalid(
            f"model reference {raw!r} holds a NUL character; expected 'name' or 'name@alias'"
        )
    name, sep, alias = raw.partition("@")
    if sep and (not name or not alias):
        raise InferRequestInvalid(f"model reference must be 'name' or 'name@alias', got '{raw}'")
    return name, (alias if sep else None)


def parse_target(name: str, version: str | None) -> tuple[Ref, int | None]:
    """Path parameters to a ref and an optional version number."""
    ref = split_model_name(name)
    if version is None:
        return ref, None
    try:
        number = int(version) if version.isdigit() else 0
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_VERSION:
        raise InferRequestInvalid(
            f"version must be a positive integer (at most {MAX_VERSION}), got {version!r}"
        )
    if ref[1] is not None:
        raise InferRequestInvalid(f"ask for '{name}' or for a version of '{ref[0]}', not both")
    return ref, number


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 < n <= len(body):
        raise InferRequestInvalid(
            f"Inference-Header-Content-Length must be an integer between 1 and the body "
            f"length {len(body)}, got '{header_length}'",
        )
    return body[:n], body[n:]


def decode(
    body: bytes, header_length: str | None, model: OnnxModel
) -> tuple[dict[str, Any], np.ndarray]:
    """The request's JSON header and its input as an array of the model's input dtype."""
    header, tail = split_body(body, header_length)
    try:
        payload = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InferRequestInvalid(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InferRequestInvalid("request body must be a JSON object with 'inputs'")
    return payload, _input_array(payload, model, tail)


def _input_array(payload: dict[str, Any], model: OnnxModel, tail: bytes) -> np.ndarray:
    tensor = _the_input(payload, model)
    label = f"input '{model.input_name}'"
    datatype, dtype, shape, count = _datatype_and_shape(tensor, model, label)
    parameters = tensor.get("parameters")
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None:
        needed = count * dtype.itemsize
        if binary_size != needed or len(tail) < needed:
            raise InferRequestInvalid(
                f"{label} of shape {shape} and datatype {datatype} needs {needed} bytes, "
                f"got binary_data_size {binary_size!r} with {len(tail)} bytes after the header",
            )
        x = np.frombuffer(tail, dtype=dtype, count=count).reshape(shape)
    else:
        x = _from_json(tensor.get("data"), dtype, datatype, shape, count, label)
    if dtype != model.input_dtype:
        x = _convert(x, model.input_dtype, model.input_datatype, label, sent=datatype)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InferRequestInvalid(
            f"{label} contains NaN or infinite values (or numbers too large for {datatype})"
        )
    return x


def _the_input(payload: dict[str, Any], model: OnnxModel) -> dict[str, Any]:
    expected_inputs = f"model '{model.name}' takes one input, '{model.input_name}'"
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InferRequestInvalid(f"request needs 'inputs': a list of tensors; {expected_inputs}")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        names = [t.get("name") if isinstance(t, dict) else t for t in inputs]
        raise InferRequestInvalid(f"{expected_inputs}, got {len(inputs)} inputs: {names}")
    tensor: dict[str, Any] = inputs[0]
    if tensor.get("name") != model.input_name:
        raise InferRequestInvalid(f"unknown input {tensor.get('name')!r}; {expected_inputs}")
    return tensor


def _datatype_and_shape(
    tensor: dict[str, Any], model: OnnxModel, label: str
) -> tuple[str, np.dtype[Any], list[int], int]:
    datatype = tensor.get("datatype")
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InferRequestInvalid(
            f"{label} datatype {datatype!r} is not one of {list(DTYPES)}; the model takes "
            f"{model.input_datatype}",
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        type(d) is int
        for d in shape  # noqa: E721 - bool is an int subclass, refused here
    ):
        raise InferRequestInvalid(f"{label} shape must be a list of integers, got {shape!r}")
    model.check_shape(shape)
    count = 1
    for d in shape:
        count *= d
    return str(datatype), dtype, shape, count


def _from_json(
    data: Any, dtype: np.dtype[Any], datatype: str, shape: list[int], count: int, label: str
) -> np.ndarray:
    if data is None:
        raise InferRequestInvalid(f"{label} has neither 'data' nor binary_data_size")
    try:
        x = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InferRequestInvalid(
            f"{label} data must be numbers in flat or nested lists: {exc}"
        ) from exc
    if x.dtype.kind not in _JSON_KINDS[dtype.kind]:
        what = {"f": "numbers", "i": "integers", "u": "integers", "b": "true/false"}
        raise InferRequestInvalid(
            f"{label} has datatype {datatype}, so 'data' must hold only {what[dtype.kind]}"
            f"{' (no null)' if x.dtype.kind == 'O' else ''}",
        )
    if x.size != count:
        raise InferRequestInvalid(
            f"{label} shape {shape} needs {count} values, got {x.size} in 'data'"
        )
    x = x.reshape(shape)
    if x.dtype.kind != dtype.kind or dtype.kind != "f":
        return _convert(x, dtype, datatype, label)
    # JSON numbers of a float tensor: parsing, not a conversion the client asked for; one
    # that overflows the type is caught as infinite by the caller.
    return x.astype(dtype)


def _convert(
    x: np.ndarray, dtype: np.dtype[Any], datatype: str, label: str, *, sent: str | None = None
) -> np.ndarray:
    """`x` as `dtype` when no value changes, else a 400 that says what the model takes."""
    if x.dtype == dtype:
        return x
    src = x.dtype.kind
    dst = dtype.kind
    why = f"{label} is {sent or 'sent as ' + str(x.dtype)} and the model takes {datatype}"
    if src == dst == "f" or src == "b" and dst != "b":
        y = x.astype(dtype)
        if src == dst == "f" and not np.isfinite(y).all() and np.isfinite(x).all():
            raise InferRequestInvalid(f"{why}: values overflow {datatype}")
        return y
    if src in "iu" and dst == "f":
        limit = _EXACT_INT[dtype.itemsize]
        if x.size and int(np.abs(x).max()) > limit:
            raise InferRequestInvalid(
                f"{why}: integers above {limit} in magnitude do not convert exactly; send {datatype}",
            )
        return x.astype(dtype)
    if src in "iu" and dst in "iu":
        info = np.iinfo(dtype)
        if x.size and (int(x.min()) < info.min or int(x.max()) > info.max):
            raise InferRequestInvalid(f"{why}: values outside [{info.min}, {info.max}]")
        return x.astype(dtype)
    raise InferRequestInvalid(f"{why}: no lossless conversion; send {datatype}")


def encode(
    payload: dict[str, Any], model: OnnxModel, y: np.ndarray
) -> tuple[bytes, str, int | None]:
    """Response body, its content type, and the JSON header length when binary."""
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise OutputNotFinite(f"model '{model.name}' produced NaN or infinite outputs")
    request_parameters = payload.get("parameters")
    if request_parameters is not None and not isinstance(request_parameters, dict):
        raise InferRequestInvalid("'parameters' must be an object")
    binary = bool(request_parameters and request_parameters.get("binary_data_output"))
    requested = payload.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
            raise InferRequestInvalid("'outputs' must be a list of objects with a 'name'")
        for output in requested:
            if output.get("name") != model.output_name:
                raise InferRequestInvalid(
                    f"unknown output {output.get('name')!r}; model '{model.name}' has one "
                    f"output, '{model.output_name}'",
                )
            output_parameters = output.get("parameters")
            if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
                binary = bool(output_parameters["binary_data"])

    tensor: dict[str, Any] = {
        "name": model.output_name,
        "datatype": model.output_datatype,
        "shape": list(y.shape),
    }
    content: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if "id" in payload:
        content["id"] = payload["id"]
    content["outputs"] = [tensor]
    if not binary:
        tensor["data"] = y.ravel()
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), "application/json", None
    raw = y.astype(DTYPES.get(model.output_datatype, y.dtype), copy=False).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(content)
    return header + raw, "application/octet-stream", len(header)


async def run(
    model: OnnxModel, body: bytes, header_length: str | None
) -> tuple[bytes, str, int | None]:
    payload, x = decode(body, header_length, model)
    batcher = model.batcher
    y = await batcher.submit(x) if batcher is not None else model.run(x)
    return encode(payload, model, y)
