"""The predictor process: `uvicorn services.predict.app:app --factory`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.predict import friendly, infer, v2
from services.predict.batching import Batcher
from services.predict.runtime import InferenceError, ModelCache, OnnxModel, split_model_name
from services.predict.source import ModelSource, Ref
from services.settings import PredictSettings

log = logging.getLogger("kiln.predict")

# Sub-millisecond requests are the normal case; the default buckets start at 5 ms.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_INFER_ROUTE = "/v2/models/{name}/infer"
_INFER_VERSION_ROUTE = "/v2/models/{name}/versions/{version}/infer"


class PredictMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "kiln_predict_requests",
            "HTTP requests by model, version, route template and status.",
            ["model", "version", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "kiln_predict_request_duration_seconds",
            "Time from the request reaching the app to the end of the response.",
            ["route", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_loads = Counter(
            "kiln_predict_model_loads",
            "Model versions loaded into ONNX Runtime (cache misses).",
            ["model", "version", "provider"],
            registry=registry,
        )
        self.model_load_seconds = Histogram(
            "kiln_predict_model_load_seconds",
            "Time to fetch, build and warm a session.",
            registry=registry,
        )
        self.switch_failures = Counter(
            "kiln_predict_alias_switch_failures",
            "Alias or newest-version moves to a version that could not be served.",
            ["ref", "version"],
            registry=registry,
        )
        self.batch_requests = Histogram(
            "kiln_predict_batch_requests",
            "Requests served by one dynamic batch.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "kiln_predict_batch_rows",
            "Rows in one dynamic batch.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )

        # labels() takes a lock and builds tuples on every call, a tenth of a tiny request's
        # time; the label sets are few (resolved models x routes x statuses), so keep them.
        self._series: dict[tuple[str, int, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, model: str, version: int, route: str, status: int, seconds: float) -> None:
        key = (model, version, route, status)
        series = self._series.get(key)
        if series is None:
            version_label = str(version) if model else ""
            series = (
                self.requests.labels(model, version_label, route, str(status)),
                self.latency.labels(route, model),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def model_loaded(self, model: OnnxModel, seconds: float) -> None:
        self.model_loads.labels(model.name, str(model.version), model.provider).inc()
        self.model_load_seconds.observe(seconds)

    def switch_failed(self, ref: str, version: int, _reason: str) -> None:
        self.switch_failures.labels(ref, str(version)).inc()

    def batch(self, model: OnnxModel, requests: int, rows: int) -> None:
        self.batch_requests.labels(model.name).observe(requests)
        self.batch_rows.labels(model.name).observe(rows)


class _CacheCollector(Collector):
    """Cache state read at scrape time, so the serving path only bumps plain ints."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("kiln_predict_loaded_models", "Model versions held in memory.")
        loaded.add_metric([], len(self.cache))
        yield loaded
        size = GaugeMetricFamily(
            "kiln_predict_loaded_bytes", "ONNX bytes of the model versions held in memory."
        )
        size.add_metric([], self.cache.loaded_bytes)
        yield size
        info = GaugeMetricFamily(
            "kiln_predict_model_info",
            "1 for each loaded model version, with the execution provider it really got.",
            labels=["model", "version", "provider"],
        )
        for model in self.cache.models():
            info.add_metric([model.name, str(model.version), model.provider], 1)
        yield info
        hits = CounterMetricFamily(
            "kiln_predict_cache_hits", "Requests served by an already loaded model."
        )
        hits.add_metric([], self.cache.hits)
        yield hits
        loads = CounterMetricFamily("kiln_predict_cache_loads", "Model versions loaded.")
        loads.add_metric([], self.cache.loads)
        yield loads


class _ServingMiddleware:
    """Serves `POST .../infer` itself; for every route, enforces the body limit and
    records request metrics.

    Plain ASGI, outside FastAPI's routing, dependency injection and exception layers:
    those cost more than the model on a one-row request. The FastAPI infer routes stay
    for the OpenAPI document and run the same code (services/predict/infer.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: PredictMetrics,
        max_body: int,
        cache: Callable[[], ModelCache | None],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.cache = cache

    def _too_large(self, size: int | None) -> InferenceError:
        got = f"of {size} bytes " if size is not None else ""
        return InferenceError(
            413,
            f"request body {got}exceeds the limit of {self.max_body} bytes "
            "(PREDICT_MAX_REQUEST_BYTES)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        if scope["method"] == "POST" and path.startswith("/v2/models/") and path.endswith("/infer"):
            cache = self.cache()
            parts = path[11:-6].split("/")
            if cache is not None and (
                len(parts) == 1 or (len(parts) == 3 and parts[1] == "versions")
            ):
                await self._infer(scope, receive, send, cache, parts, started)
                return
        await self._other(scope, receive, send, started)

    async def _infer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        cache: ModelCache,
        parts: list[str],
        started: float,
    ) -> None:
        route = _INFER_ROUTE if len(parts) == 1 else _INFER_VERSION_ROUTE
        model: OnnxModel | None = None
        status = 200
        header_length: str | None = None
        declared: int | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
        headers: list[tuple[bytes, bytes]]
        try:
            if declared is not None and declared > self.max_body:
                raise self._too_large(declared)
            body = await self._read(receive)
            if body is None:
                return  # the client went away
            ref, version = infer.parse_target(parts[0], parts[2] if len(parts) == 3 else None)
            model = cache.lookup(ref, version) or await cache.get(ref, version)
            content, content_type, json_length = await infer.run(model, body, header_length)
            headers = [(b"content-type", content_type.encode())]
            if json_length is not None:
                headers.append((b"inference-header-content-length", str(json_length).encode()))
        except InferenceError as exc:
            status = exc.status_code
            content = v2.error_body(exc.message)
            headers = [(b"content-type", b"application/json")]
        except Exception:
            log.exception("inference failed")
            status = 500
            content = v2.error_body("internal server error")
            headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        name, number = (model.name, model.version) if model is not None else ("", 0)
        self.metrics.observe(name, number, route, status, time.perf_counter() - started)

    async def _read(self, receive: Receive) -> bytes | None:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > self.max_body:
                raise self._too_large(None)
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            # Chunked bodies have no length up front; count them as they arrive.
            if size > self.max_body:
                raise self._too_large(None)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _other(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        declared: int | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else None
                break
        try:
            if declared is not None and declared > self.max_body:
                error = self._too_large(declared)
                response = v2.json_response({"error": error.message}, error.status_code)
                await response(scope, receive, send_observed)
                return
            if declared is None:
                receive = self._limited(receive)
            await self.app(scope, receive, send_observed)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            model, version = scope.get(v2.MODEL_SCOPE_KEY, ("", 0))
            self.metrics.observe(model, version, route, status, time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise self._too_large(None)
            return message

        return receive_limited


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}"


def _kiln_version() -> str:
    try:
        return importlib.metadata.version("kiln")
    except importlib.metadata.PackageNotFoundError:
        return "0+source"


def _registry_source(settings: PredictSettings) -> ModelSource:
    # Imported by name so tests and the bench, which inject a source, never load the
    # registry's SQLAlchemy stack, and so this module type-checks with or without it.
    module = importlib.import_module("services.predict.registry_source")
    factory = cast(Callable[[PredictSettings], ModelSource], module.RegistrySource)
    return factory(settings)


def parse_preload(raw: str) -> list[tuple[Ref, int | None]]:
    """`iris,cancer@production,wine/3` to refs and versions."""
    refs: list[tuple[Ref, int | None]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, _, version = item.partition("/")
        refs.append(infer.parse_target(name, version or None))
    return refs


def create_app(settings: PredictSettings, *, source: ModelSource | None = None) -> FastAPI:
    """The predictor app; the model source and ORT sessions are built in its lifespan,
    after uvicorn forked its workers."""
    metrics = PredictMetrics(CollectorRegistry(auto_describe=True))
    preload = parse_preload(settings.predict_preload)
    batch_models = {m.strip() for m in settings.predict_batch_models.split(",") if m.strip()}

    def configure(model: OnnxModel) -> None:
        if settings.predict_batch_max_delay_us > 0 and (
            not batch_models or model.name in batch_models
        ):
            model.batcher = Batcher(
                model,
                max_delay_s=settings.predict_batch_max_delay_us / 1e6,
                max_size=settings.predict_batch_max_size,
                on_batch=metrics.batch,
            )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_source = source if source is not None else _registry_source(settings)
        cache = ModelCache(
            model_source,
            device=settings.predict_device,
            max_loaded=settings.predict_cache_max_models,
            max_bytes=settings.predict_cache_max_bytes,
            on_load=metrics.model_loaded,
            on_switch_failed=metrics.switch_failed,
            configure=configure,
        )
        collector = _CacheCollector(cache)
        metrics.registry.register(collector)
        app.state.model_cache = cache
        # Loaded and warmed before the server reports ready; a model that cannot load
        # stops the start, rather than a ready server that fails its first requests.
        await cache.preload(preload)
        refresher = asyncio.create_task(_refresh_forever(cache, settings))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            metrics.registry.unregister(collector)
            # Only a source built here is ours to close; an injected one belongs to the caller.
            close = getattr(model_source, "close", None) if source is None else None
            if callable(close):
                close()

    app = FastAPI(
        title="Kiln predictor",
        version=_kiln_version(),
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # Kiln exports Prometheus metrics; FastAPI's native OpenTelemetry hooks check the
        # global providers on every request even when none is configured (a one-row MLP
        # infer in-process: 48 µs with them, 43 µs without).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ready = False
    app.include_router(v2.router)
    app.include_router(friendly.router)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Requests by model, version, route and status; latencies; batch sizes; loaded
        models with their execution provider; cache hits and loads."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_exception_handler(InferenceError, _inference_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(
        _ServingMiddleware,
        metrics=metrics,
        max_body=settings.predict_max_request_bytes,
        cache=lambda: cast(ModelCache | None, getattr(app.state, "model_cache", None)),
    )
    return app


async def _refresh_forever(cache: ModelCache, settings: PredictSettings) -> None:
    while True:
        await asyncio.sleep(settings.predict_refresh_interval_s)
        try:
            await cache.refresh()
        except Exception:
            # A registry that is down for a moment must not stop alias following for good.
            log.exception("refreshing model references failed; serving what is loaded")


async def _inference_error(_request: Request, exc: Exception) -> Response:
    error = cast(InferenceError, exc)
    return v2.json_response({"error": error.message}, error.status_code)


async def _http_error(_request: Request, exc: Exception) -> Response:
    error = cast(StarletteHTTPException, exc)
    response = v2.json_response({"error": str(error.detail)}, error.status_code)
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _internal_error(_request: Request, _exc: Exception) -> Response:
    # Starlette still logs the traceback; clients get the protocol's error shape, no details.
    return v2.json_response({"error": "internal server error"}, 500)


def app() -> FastAPI:
    return create_app(PredictSettings())


__all__ = ["app", "create_app", "split_model_name"]
