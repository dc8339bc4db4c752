"""ONNX Runtime sessions for registered models, and the bounded cache that holds them."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import anyio
import anyio.to_thread
import numpy as np
import onnxruntime as ort

from services.predict.source import ModelNotFound, ModelSource, ResolvedModel, VersionNotFound

Device = Literal["auto", "cpu"]
Task = Literal["binary", "multiclass", "regression"]
_TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


class InferenceError(Exception):
    """A failure the caller is told about, with the HTTP status it maps to."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class ModelLoadError(Exception):
    """A version exists but cannot be served: a malformed signature or a graph ORT refuses."""


class OnnxModel:
    """One model version in an ONNX Runtime session, shaped by its training signature."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        signature: dict[str, Any],
        session: ort.InferenceSession,
    ) -> None:
        self.name = name
        self.version = version
        self.signature = signature
        self.session = session
        # get_providers() rather than what was asked for: onnxruntime-gpu lists CUDA as
        # available without the CUDA libraries and then silently runs on the CPU.
        self.provider: str = session.get_providers()[0]

        inputs = _single(signature, "inputs")
        outputs = _single(signature, "outputs")
        self.input_name: str = str(inputs["name"])
        self.input_datatype: str = str(inputs.get("datatype", "FP32"))
        self.input_shape: list[int] = _shape(inputs, "inputs")
        self.output_name: str = str(outputs["name"])
        self.output_datatype: str = str(outputs.get("datatype", "FP32"))
        self.output_shape: list[int] = _shape(outputs, "outputs")
        self.n_features = self.input_shape[1]
        self.n_outputs = self.output_shape[1]

        self.feature_names: list[str] = [str(f) for f in signature.get("feature_names") or []]
        if len(self.feature_names) != self.n_features:
            raise ModelLoadError(
                f"signature lists {len(self.feature_names)} feature_names "
                f"but input '{self.input_name}' has {self.n_features} features"
            )
        task = signature.get("task")
        if task not in _TASKS:
            raise ModelLoadError(f"signature task must be one of {list(_TASKS)}, got {task!r}")
        self.task: Task = task
        labels = signature.get("class_labels")
        self.class_labels: list[Any] | None = list(labels) if labels is not None else None
        if self.task == "binary":
            if self.n_outputs != 1:
                raise ModelLoadError(f"a binary model has 1 output, got {self.n_outputs}")
            if self.class_labels is not None and len(self.class_labels) != 2:
                raise ModelLoadError(f"a binary model has 2 class_labels, got {self.class_labels}")
        elif self.task == "multiclass" and self.class_labels is not None:
            if len(self.class_labels) != self.n_outputs:
                raise ModelLoadError(
                    f"{len(self.class_labels)} class_labels for {self.n_outputs} outputs"
                )

        graph_inputs = session.get_inputs()
        if len(graph_inputs) != 1:
            raise ModelLoadError(f"the ONNX graph has {len(graph_inputs)} inputs, expected 1")
        # The graph's own names are what ORT needs; the signature's are what clients send.
        self._feed_name: str = graph_inputs[0].name
        self._fetch_names: list[str] = [session.get_outputs()[0].name]

    @classmethod
    def load(cls, resolved: ResolvedModel, *, device: Device) -> OnnxModel:
        """Build the session and run it once on zeros, so the first request pays no warm-up."""
        options = ort.SessionOptions()
        # Models are tiny MLPs and predictors scale out as one process per core: a thread
        # pool buys nothing on a ~5 µs call (8-12-8-1 MLP, one row: 4.5 µs with one thread,
        # no faster with the default pool) and its threads would fight the other processes
        # for cores. ORT_ENABLE_ALL fuses MatMul+Add once at load; BASIC ran ~10% slower.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(
                resolved.onnx_bytes, sess_options=options, providers=providers
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad graphs
            raise ModelLoadError(
                f"ONNX Runtime cannot load model '{resolved.name}' "
                f"version {resolved.version}: {exc}"
            ) from exc
        try:
            model = cls(
                name=resolved.name,
                version=resolved.version,
                signature=resolved.signature,
                session=session,
            )
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"model '{resolved.name}' version {resolved.version} has a malformed "
                f"signature: {exc!r}"
            ) from exc
        model.predict(np.zeros((1, model.n_features), dtype=np.float32))
        return model

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Rows of features, shape (n, F), to outputs, shape (n, O), float32."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InferenceError(
                400,
                f"input '{self.input_name}' expects shape {self.input_shape}, got {list(x.shape)}",
            )
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        out: np.ndarray = self.session.run(self._fetch_names, {self._feed_name: x})[0]
        return out


def _single(signature: dict[str, Any], key: str) -> dict[str, Any]:
    specs = signature.get(key)
    if not isinstance(specs, list) or len(specs) != 1 or not isinstance(specs[0], dict):
        raise ModelLoadError(f"signature '{key}' must list exactly one tensor, got {specs!r}")
    spec: dict[str, Any] = specs[0]
    return spec


def _shape(spec: dict[str, Any], key: str) -> list[int]:
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) for d in shape)
        or shape[1] < 1
    ):
        raise ModelLoadError(f"signature {key} shape must be [-1, n], got {shape!r}")
    return shape


class ModelCache:
    """Loaded models keyed by (name, version), least recently used evicted first.

    "The newest version of a name" is remembered for `latest_ttl_s` seconds, so a
    promotion shows up within that time without a registry round trip per request.
    Source calls and session builds run in a worker thread: a slow registry or a big
    graph must not stall requests for models already loaded.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        device: Device,
        max_loaded: int,
        latest_ttl_s: float,
        on_load: Callable[[OnnxModel, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self._source = source
        self._device: Device = device
        self._max_loaded = max_loaded
        self._latest_ttl_s = latest_ttl_s
        self._on_load = on_load
        self._clock = clock
        self._models: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        self._latest: dict[str, tuple[int, float]] = {}
        self._loading: dict[tuple[str, int], anyio.Lock] = {}

    def __len__(self) -> int:
        return len(self._models)

    def loaded(self) -> list[tuple[str, int]]:
        """Keys from least to most recently used."""
        return list(self._models)

    async def latest_version(self, name: str) -> int:
        cached = self._latest.get(name)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            version = await anyio.to_thread.run_sync(self._source.latest_version, name)
        except (ModelNotFound, VersionNotFound) as exc:  # a model with no versions yet
            raise InferenceError(404, str(exc)) from exc
        self._latest[name] = (version, now + self._latest_ttl_s)
        return version

    async def get(self, name: str, version: int | None = None) -> OnnxModel:
        """The model at `version`, or the newest one; raises `InferenceError` (404, 500)."""
        if version is None:
            version = await self.latest_version(name)
        key = (name, version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        return await self._load(key)

    async def _load(self, key: tuple[str, int]) -> OnnxModel:
        # One load per key even when many requests for a cold model arrive together.
        lock = self._loading.setdefault(key, anyio.Lock())
        try:
            async with lock:
                model = self._models.get(key)
                if model is not None:
                    return model
                started = time.perf_counter()
                model = await anyio.to_thread.run_sync(self._load_blocking, key)
                self._models[key] = model
                while len(self._models) > self._max_loaded:
                    self._models.popitem(last=False)
                if self._on_load is not None:
                    self._on_load(model, time.perf_counter() - started)
                return model
        finally:
            self._loading.pop(key, None)

    def _load_blocking(self, key: tuple[str, int]) -> OnnxModel:
        name, version = key
        try:
            resolved = self._source.load(name, version)
        except (ModelNotFound, VersionNotFound) as exc:
            raise InferenceError(404, str(exc)) from exc
        try:
            return OnnxModel.load(resolved, device=self._device)
        except ModelLoadError as exc:
            raise InferenceError(500, str(exc)) from exc
