"""One registered version in an ONNX Runtime session, shaped by its training signature."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from core.text import printable
from core.vocabulary import DataKind, Task
from services.predict.errors import InferRequestInvalid, ModelLoadError
from services.predict.source import ResolvedModel

log = logging.getLogger("kiln.predict")

Device = Literal["auto", "cpu"]

# OIP datatype names and their numpy dtypes (little-endian, as the binary extension sends).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


def session_options() -> ort.SessionOptions:
    """One intra-op thread and every graph optimisation, chosen by bench/ort_options.py.

    Predictors scale out as one process per core: a thread pool buys nothing on a call of
    tens of microseconds (the 8-12-8-1 MLP and the digits CNN measured no faster with the
    default pool) and its spinning threads fight the other processes for cores.
    ORT_ENABLE_ALL fuses MatMul+Add and Conv+Relu once, at load.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def choose_providers(device: Device) -> list[str]:
    """CUDA first when asked for and listed; the session reports what it really got."""
    providers = ["CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return providers


class OnnxModel:
    """Inputs are `[-1, *item_shape]`: `[F]` for tables, `[H, W, C]` for images and
    `[steps, F]` for sequences (the signature contract shared with training)."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        signature: dict[str, Any],
        session: ort.InferenceSession,
        size_bytes: int = 0,
    ) -> None:
        self.name = name
        self.version = version
        self.signature = signature
        self.session = session
        self.size_bytes = size_bytes
        # get_providers() rather than what was asked for: onnxruntime-gpu lists CUDA as
        # available without the CUDA libraries and then silently runs on the CPU.
        self.provider: str = session.get_providers()[0]
        self._read_tensors(signature)
        self._read_kind(signature)
        self._read_task(signature)
        graph_inputs = session.get_inputs()
        if len(graph_inputs) != 1:
            raise ModelLoadError(f"the ONNX graph has {len(graph_inputs)} inputs, expected 1")
        graph_rank = len(graph_inputs[0].shape)
        if graph_rank != len(self.input_shape):
            raise ModelLoadError(
                f"the ONNX graph's input has rank {graph_rank}, the signature says "
                f"{self.input_shape}"
            )
        # The graph's own names are what ORT needs; the signature's are what clients send.
        self._feed_name: str = graph_inputs[0].name
        self._fetch_names: list[str] = [session.get_outputs()[0].name]
        # Set by the cache when dynamic batching is on for this model.
        self.batcher: Any = None

    def _read_tensors(self, signature: dict[str, Any]) -> None:
        inputs = _single(signature, "inputs")
        outputs = _single(signature, "outputs")
        self.input_name: str = str(inputs["name"])
        self.input_datatype: str = str(inputs.get("datatype", "FP32"))
        if self.input_datatype not in DTYPES:
            raise ModelLoadError(f"signature input datatype {self.input_datatype!r} is unknown")
        self.input_dtype = DTYPES[self.input_datatype]
        self.input_shape: list[int] = _shape(inputs, "inputs", min_rank=2)
        self.item_shape: tuple[int, ...] = tuple(self.input_shape[1:])
        self.item_size = math.prod(self.item_shape)
        self.output_name: str = str(outputs["name"])
        self.output_datatype: str = str(outputs.get("datatype", "FP32"))
        self.output_shape: list[int] = _shape(outputs, "outputs", min_rank=2)
        self.n_outputs = self.output_shape[1]

    def _read_kind(self, signature: dict[str, Any]) -> None:
        kind = signature.get("kind") or DataKind.TABLE
        if kind not in list(DataKind):
            raise ModelLoadError(
                f"signature kind must be one of {[k.value for k in DataKind]}, got {kind!r}"
            )
        self.kind = DataKind(kind)
        self.feature_names: list[str] = [str(f) for f in signature.get("feature_names") or []]
        if self.kind == DataKind.IMAGE:
            return
        if len(self.item_shape) != (1 if self.kind == DataKind.TABLE else 2):
            raise ModelLoadError(f"a {kind} model's input shape cannot be {self.input_shape}")
        per_step = self.item_shape[-1]
        if len(self.feature_names) != per_step:
            raise ModelLoadError(
                f"signature lists {len(self.feature_names)} feature_names "
                f"but input '{self.input_name}' has {per_step} features"
            )

    def _read_task(self, signature: dict[str, Any]) -> None:
        task = signature.get("task")
        if task not in list(Task):
            raise ModelLoadError(
                f"signature task must be one of {[t.value for t in Task]}, got {task!r}"
            )
        self.task = Task(task)
        labels = signature.get("class_labels")
        self.class_labels: list[Any] | None = list(labels) if labels is not None else None
        if self.task == Task.BINARY:
            if self.n_outputs != 1:
                raise ModelLoadError(f"a binary model has 1 output, got {self.n_outputs}")
            if self.class_labels is not None and len(self.class_labels) != 2:
                raise ModelLoadError(f"a binary model has 2 class_labels, got {self.class_labels}")
        elif self.task == Task.MULTICLASS and self.class_labels is not None:
            if len(self.class_labels) != self.n_outputs:
                raise ModelLoadError(
                    f"{len(self.class_labels)} class_labels for {self.n_outputs} outputs"
                )

    @classmethod
    def load(cls, resolved: ResolvedModel, *, device: Device) -> OnnxModel:
        """Build the session and run it once on zeros, so the first request pays no warm-up."""
        where = f"model '{resolved.name}' version {resolved.version}"
        try:
            session = _session(resolved, choose_providers(device))
        except Exception as exc:  # ORT raises its own untyped errors for bad graphs
            raise ModelLoadError(f"ONNX Runtime cannot load {where}: {exc}") from exc
        try:
            model = cls(
                name=resolved.name,
                version=resolved.version,
                signature=resolved.signature,
                session=session,
                size_bytes=len(resolved.onnx_bytes),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{where} has a malformed signature: {exc!r}") from exc
        try:
            model.predict(np.zeros((1, *model.item_shape), dtype=model.input_dtype))
        except Exception as exc:
            raise ModelLoadError(f"{where} fails its warm-up run: {exc}") from exc
        return model

    def check_shape(self, shape: Sequence[int]) -> None:
        if (
            len(shape) != len(self.input_shape)
            or shape[0] < 1
            or any(d != e for d, e in zip(shape[1:], self.item_shape, strict=True) if e != -1)
        ):
            raise InferRequestInvalid(
                f"input '{self.input_name}' expects shape {self.input_shape}, got {list(shape)} "
                "(-1: any number of rows)"
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Items, shape (n, *item_shape), to outputs, shape (n, O)."""
        self.check_shape(x.shape)
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        return self.run(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """`predict` without the checks, for input the protocol layer already checked."""
        out: np.ndarray = self.session.run(self._fetch_names, {self._feed_name: x})[0]
        return out


def _session(resolved: ResolvedModel, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            resolved.onnx_bytes, sess_options=session_options(), providers=providers
        )
    except Exception:
        if providers == ["CPUExecutionProvider"]:
            raise
        # A CUDA provider that is listed but fails to start (driver, cuDNN, memory) must not
        # take a model offline that the CPU can serve; the metadata then reports CPU.
        log.warning(
            "model '%s' version %d: session with %s failed; falling back to the CPU",
            printable(resolved.name),
            resolved.version,
            providers,
            exc_info=True,
        )
        return ort.InferenceSession(
            resolved.onnx_bytes,
            sess_options=session_options(),
            providers=["CPUExecutionProvider"],
        )


def _single(signature: dict[str, Any], key: str) -> dict[str, Any]:
    specs = signature.get(key)
    if not isinstance(specs, list) or len(specs) != 1 or not isinstance(specs[0], dict):
        raise ModelLoadError(f"signature '{key}' must list exactly one tensor, got {specs!r}")
    spec: dict[str, Any] = specs[0]
    return spec


def _shape(spec: dict[str, Any], key: str, *, min_rank: int) -> list[int]:
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) < min_rank
        or not all(isinstance(d, int) and (d >= 1 or d == -1) for d in shape)
        or shape[-1] < 1
    ):
        raise ModelLoadError(f"signature {key} shape must be [-1, n, ...], got {shape!r}")
    return shape
