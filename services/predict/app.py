"""The predictor process: `uvicorn services.predict.app:app --factory`."""

from __future__ import annotations

import importlib
import importlib.metadata
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.predict import friendly, v2
from services.predict.runtime import InferenceError, ModelCache, OnnxModel
from services.predict.source import ModelSource
from services.settings import PredictSettings

# Sub-millisecond requests are the normal case; the default buckets start at 5 ms.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


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
        self.loaded_models = Gauge(
            "kiln_predict_loaded_models", "Model versions held in memory.", registry=registry
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


class _ServingMiddleware:
    """Enforces the body limit and records request metrics.

    Plain ASGI rather than BaseHTTPMiddleware, and one layer for both jobs, because it
    sits on the path of every sub-millisecond request.
    """

    def __init__(self, app: ASGIApp, *, metrics: PredictMetrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    def _too_large(self, size: int | None) -> InferenceError:
        got = f"of {size} bytes " if size is not None else ""
        return InferenceError(
            413, f"request body {got}exceeds the limit of {self.max_body} bytes (max_request_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
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
                # Chunked bodies have no length up front; count them as they arrive.
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


def create_app(settings: PredictSettings, *, source: ModelSource | None = None) -> FastAPI:
    """The predictor app; the model source and ORT sessions are built in its lifespan."""
    metrics = PredictMetrics(CollectorRegistry(auto_describe=True))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_source = source if source is not None else _registry_source(settings)
        cache = ModelCache(
            model_source,
            device=settings.predict_device,
            max_loaded=settings.max_loaded_models,
            latest_ttl_s=settings.latest_version_ttl_s,
            on_load=metrics.model_loaded,
        )
        metrics.loaded_models.set_function(lambda: len(cache))
        app.state.model_cache = cache
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            # Only a source built here is ours to close; an injected one belongs to the caller.
            close = getattr(model_source, "close", None) if source is None else None
            if callable(close):
                close()

    app = FastAPI(
        title="Kiln predictor",
        version=_kiln_version(),
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.ready = False
    app.include_router(v2.router)
    app.include_router(friendly.router)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Request counts and latencies by model, version and route; loaded models; loads."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_exception_handler(InferenceError, _inference_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(_ServingMiddleware, metrics=metrics, max_body=settings.max_request_bytes)
    return app


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
