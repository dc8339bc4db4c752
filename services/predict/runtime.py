"""ONNX Runtime sessions for registered models, and the bounded cache that holds them."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
import anyio.to_thread
import numpy as np
import onnxruntime as ort

from services.predict.source import (
    AliasNotFound,
    ModelNotFound,
    ModelSource,
    NoServableVersion,
    Ref,
    ResolvedModel,
    SourceUnavailable,
    VersionNotFound,
)

log = logging.getLogger("kiln.predict")

Device = Literal["auto", "cpu"]
Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["table", "image", "sequence"]
_TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
_KINDS: tuple[Kind, ...] = ("table", "image", "sequence")

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


class InferenceError(Exception):
    """A failure the caller is told about, with the HTTP status it maps to."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class ModelLoadError(Exception):
    """A version exists but cannot be served: a malformed signature or a graph ORT refuses."""


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
    """One model version in an ONNX Runtime session, shaped by its training signature.

    Inputs are `[-1, *item_shape]`: `[F]` for tables, `[H, W, C]` for images and
    `[steps, F]` for sequences (the signature contract shared with training).
    """

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

        kind = signature.get("kind") or "table"
        if kind not in _KINDS:
            raise ModelLoadError(f"signature kind must be one of {list(_KINDS)}, got {kind!r}")
        self.kind: Kind = kind
        self.feature_names: list[str] = [str(f) for f in signature.get("feature_names") or []]
        if kind in ("table", "sequence"):
            per_step = self.item_shape[-1]
            if len(self.item_shape) != (1 if kind == "table" else 2):
                raise ModelLoadError(f"a {kind} model's input shape cannot be {self.input_shape}")
            if len(self.feature_names) != per_step:
                raise ModelLoadError(
                    f"signature lists {len(self.feature_names)} feature_names "
                    f"but input '{self.input_name}' has {per_step} features"
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

    @classmethod
    def load(cls, resolved: ResolvedModel, *, device: Device) -> OnnxModel:
        """Build the session and run it once on zeros, so the first request pays no warm-up."""
        try:
            session = _session(resolved, choose_providers(device))
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
                size_bytes=len(resolved.onnx_bytes),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(
                f"model '{resolved.name}' version {resolved.version} has a malformed "
                f"signature: {exc!r}"
            ) from exc
        try:
            model.predict(np.zeros((1, *model.item_shape), dtype=model.input_dtype))
        except Exception as exc:
            raise ModelLoadError(
                f"model '{resolved.name}' version {resolved.version} fails its warm-up run: {exc}"
            ) from exc
        return model

    def check_shape(self, shape: Sequence[int]) -> None:
        if (
            len(shape) != len(self.input_shape)
            or shape[0] < 1
            or any(d != e for d, e in zip(shape[1:], self.item_shape, strict=True) if e != -1)
        ):
            raise InferenceError(
                400,
                f"input '{self.input_name}' expects shape {self.input_shape}, got {list(shape)} "
                "(-1: any number of rows)",
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
            resolved.name,
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


def split_model_name(raw: str) -> Ref:
    """`name@alias` to (name, alias); a plain name to (name, None)."""
    name, sep, alias = raw.partition("@")
    if sep and (not name or not alias):
        raise InferenceError(400, f"model reference must be 'name' or 'name@alias', got '{raw}'")
    return name, (alias if sep else None)


class ModelCache:
    """Loaded models keyed by (name, version), bounded by count and bytes, LRU evicted.

    Refs (`name`, `name@alias`) resolve to a version once, on first use; afterwards a
    background task calls `refresh()` every fraction of a second with one registry query
    for all refs in use, loads and warms a new target before switching to it, and keeps
    the old version serving (and reports why) when the new one cannot load. Requests in
    flight keep the model object they resolved, so a switch never fails one.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        device: Device,
        max_loaded: int,
        max_bytes: int = 0,
        on_load: Callable[[OnnxModel, float], None] | None = None,
        on_switch_failed: Callable[[str, int, str], None] | None = None,
        configure: Callable[[OnnxModel], None] | None = None,
        failed_ttl_s: float = 5.0,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self._source = source
        self._device: Device = device
        self._max_loaded = max_loaded
        self._max_bytes = max_bytes
        self._on_load = on_load
        self._on_switch_failed = on_switch_failed
        self._configure = configure
        self._models: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        self._bytes = 0
        self._refs: dict[Ref, int] = {}
        self._ref_errors: dict[Ref, tuple[int, str]] = {}
        self._loading: dict[tuple[str, int], anyio.Lock] = {}
        # Versions that failed to load, and until when that answer stands: a client
        # hammering a broken version must not rebuild its session on every request.
        self._failed: dict[tuple[str, int], tuple[float, InferenceError]] = {}
        self._failed_ttl_s = failed_ttl_s
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._models)

    @property
    def loaded_bytes(self) -> int:
        return self._bytes

    def loaded(self) -> list[tuple[str, int]]:
        """Keys from least to most recently used."""
        return list(self._models)

    def models(self) -> list[OnnxModel]:
        return list(self._models.values())

    def ref_error(self, ref: Ref) -> tuple[int, str] | None:
        """The version a ref moved to that could not be served, and why."""
        return self._ref_errors.get(ref)

    def lookup(self, ref: Ref, version: int | None) -> OnnxModel | None:
        """The loaded model without awaiting anything, or None; the serving fast path."""
        if version is None:
            version = self._refs.get(ref)
            if version is None:
                return None
        key = (ref[0], version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            self.hits += 1
        return model

    async def get(self, ref: Ref, version: int | None = None) -> OnnxModel:
        """The model `ref` points at, or `version` of it; raises `InferenceError` (404, 500)."""
        model = self.lookup(ref, version)
        if model is not None:
            return model
        if version is not None:
            if ref[1] is not None:
                raise InferenceError(
                    400, f"ask for '{ref[0]}@{ref[1]}' or for a version of '{ref[0]}', not both"
                )
            return await self._load((ref[0], version))
        try:
            version = await anyio.to_thread.run_sync(self._source.resolve, ref)
        except (ModelNotFound, VersionNotFound, NoServableVersion, AliasNotFound) as exc:
            raise InferenceError(404, str(exc)) from exc
        model = await self._load((ref[0], version))
        # Just read from the registry, so at least as fresh as what the refresher saw.
        self._refs[ref] = version
        return model

    async def preload(self, refs: Sequence[tuple[Ref, int | None]]) -> None:
        for ref, version in refs:
            await self.get(ref, version)

    async def refresh(self) -> None:
        """Follow every ref in use to where the registry points it now."""
        refs = list(self._refs)
        if not refs:
            return
        current = await anyio.to_thread.run_sync(self._source.resolve_many, refs)
        for ref in refs:
            version = current.get(ref)
            if version is None:
                # The alias was deleted or every version archived: forget it, so the next
                # request asks the registry and gets its 404.
                self._refs.pop(ref, None)
                self._ref_errors.pop(ref, None)
                continue
            if version == self._refs.get(ref):
                self._ref_errors.pop(ref, None)
                continue
            failed = self._ref_errors.get(ref)
            if failed is not None and failed[0] == version:
                continue  # already tried and reported; wait for the next move
            try:
                await self._load((ref[0], version))
            except InferenceError as exc:
                self._ref_errors[ref] = (version, exc.message)
                label = ref[0] + (f"@{ref[1]}" if ref[1] else "")
                log.error(
                    "%s moved to version %d, which cannot be served; still serving version %d: %s",
                    label,
                    version,
                    self._refs.get(ref, 0),
                    exc.message,
                )
                if self._on_switch_failed is not None:
                    self._on_switch_failed(label, version, exc.message)
                continue
            previous = self._refs.get(ref)
            self._refs[ref] = version
            self._ref_errors.pop(ref, None)
            log.info("%s now serves version %d (was %s)", ref, version, previous)

    async def _load(self, key: tuple[str, int]) -> OnnxModel:
        # One load per key even when many requests for a cold model arrive together.
        lock = self._loading.setdefault(key, anyio.Lock())
        try:
            async with lock:
                model = self._models.get(key)
                if model is not None:
                    return model
                failed = self._failed.get(key)
                if failed is not None and failed[0] > time.monotonic():
                    raise failed[1]
                started = time.perf_counter()
                try:
                    model = await anyio.to_thread.run_sync(self._load_blocking, key)
                except InferenceError as exc:
                    if exc.status_code >= 500:
                        self._failed[key] = (time.monotonic() + self._failed_ttl_s, exc)
                    raise
                self._failed.pop(key, None)
                if self._configure is not None:
                    self._configure(model)
                self._models[key] = model
                self._bytes += model.size_bytes
                self.loads += 1
                self._evict()
                if self._on_load is not None:
                    self._on_load(model, time.perf_counter() - started)
                return model
        finally:
            self._loading.pop(key, None)

    def _evict(self) -> None:
        # The newest model always stays, even alone over the byte bound: refusing to
        # serve it would be worse than the memory it takes.
        while len(self._models) > 1 and (
            len(self._models) > self._max_loaded
            or (self._max_bytes and self._bytes > self._max_bytes)
        ):
            _, evicted = self._models.popitem(last=False)
            self._bytes -= evicted.size_bytes

    def _load_blocking(self, key: tuple[str, int]) -> OnnxModel:
        name, version = key
        try:
            resolved = self._source.load(name, version)
        except (ModelNotFound, VersionNotFound) as exc:
            raise InferenceError(404, str(exc)) from exc
        except SourceUnavailable as exc:
            # Transient: the client may retry, and a load balancer may try another replica.
            raise InferenceError(
                503, f"model '{name}' version {version} cannot be read now: {exc}"
            ) from exc
        except Exception as exc:  # a missing or corrupt artifact: the registry's own errors
            raise InferenceError(
                500, f"model '{name}' version {version} cannot be read: {exc}"
            ) from exc
        try:
            return OnnxModel.load(resolved, device=self._device)
        except ModelLoadError as exc:
            raise InferenceError(500, str(exc)) from exc
