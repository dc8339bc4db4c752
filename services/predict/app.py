"""The predictor process: `uvicorn services.predict.app:app --factory`.

`create_app` wires the parts: the model cache and its source (built in the lifespan,
after uvicorn forked its workers), the refresher that follows aliases, the metrics, the
serving middleware (services/predict/serving.py) and the documented FastAPI routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import metrics as core_metrics
from core.access import KeyRing
from core.errors import KilnError
from core.logs import LogSettings, configure
from services import docs, openapi, request_ids
from services.predict import access, friendly, infer, responses, v2
from services.predict.batching import Batcher
from services.predict.cache import ModelCache
from services.predict.metrics import PredictMetrics
from services.predict.model import OnnxModel
from services.predict.request import RequestHook
from services.predict.serving import ServingMiddleware
from services.predict.source import ModelSource, Ref
from services.settings import PredictSettings

log = logging.getLogger("kiln.predict")


def create_app(
    settings: PredictSettings,
    *,
    source: ModelSource | None = None,
    hooks: Sequence[RequestHook] = (),
    keys: KeyRing | None = None,
) -> FastAPI:
    """The predictor app. ``source`` replaces the registry (tests, the bench); ``hooks``
    run on every request, before the body is read, after the body limit and the API key
    check. ``keys`` replaces the registry's keys; they are checked when the settings
    require keys (KILN_AUTH), and a predictor that runs open lets every request in."""
    metrics = PredictMetrics(CollectorRegistry(auto_describe=True))
    if settings.auth_required:
        keys = keys if keys is not None else _registry_keys(settings)
        hooks = [access.key_check(keys, rate=settings.predict_rate_limit), *hooks]
    else:
        keys = None
    app = FastAPI(
        title="Kiln predictor",
        version=_kiln_version(),
        lifespan=_lifespan(settings, source, metrics, keys),
        generate_unique_id_function=_operation_id,
        # Kiln exports Prometheus metrics; FastAPI's native OpenTelemetry hooks check the
        # global providers on every request even when none is configured (a one-row MLP
        # infer in-process: 48 µs with them, 43 µs without).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served from the package, not a CDN (services/docs.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.ready = False
    app.include_router(v2.router)
    app.include_router(friendly.router)

    scrape = core_metrics.scrape_registry(metrics.registry)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Requests by model, version, route and status; latencies; batch sizes; loaded
        models with their execution provider; cache hits and loads."""
        cache = cast(ModelCache | None, getattr(app.state, "model_cache", None))
        metrics.sync(cache, scraping=True)
        return Response(generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)

    docs.install(app)
    openapi.install(app, models=[v2.InferRequest, friendly.PredictRequest])
    app.add_exception_handler(KilnError, _error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Starlette logs the traceback of anything else; clients get the protocol's shape.
    app.add_exception_handler(Exception, _error)
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        max_body=settings.predict_max_request_bytes,
        hooks=hooks,
        max_in_flight=settings.predict_max_in_flight,
        cache=lambda: cast(ModelCache | None, getattr(app.state, "model_cache", None)),
    )
    # Around everything, ServingMiddleware and the error handlers included: every line of
    # a request carries its id, and every answer, a 500 too.
    request_ids.install(app)
    return app


def _lifespan(
    settings: PredictSettings,
    source: ModelSource | None,
    metrics: PredictMetrics,
    keys: KeyRing | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    preload = parse_preload(settings.predict_preload)

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
            configure=_batching(settings, metrics),
        )
        app.state.model_cache = cache
        # Loaded and warmed before the server reports ready; a model that cannot load
        # stops the start, rather than a ready server that fails its first requests.
        await cache.preload(preload)
        tasks = [asyncio.create_task(_refresh_forever(cache, settings))]
        if core_metrics.multiprocess_dir():
            # Another process may answer the scrape: this one's state must be there too.
            tasks.append(asyncio.create_task(_sync_metrics_forever(metrics, cache)))
        if keys is not None:
            # Read before the server reports ready; then only in the background.
            await anyio.to_thread.run_sync(keys.refresh)
            tasks.append(asyncio.create_task(keys.keep_fresh()))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            core_metrics.process_exited(os.getpid())
            # Only a source built here is ours to close; an injected one belongs to the caller.
            close = getattr(model_source, "close", None) if source is None else None
            if callable(close):
                close()

    return lifespan


async def _sync_metrics_forever(metrics: PredictMetrics, cache: ModelCache) -> None:
    while True:
        metrics.sync(cache)
        await asyncio.sleep(0.5)


def _batching(settings: PredictSettings, metrics: PredictMetrics) -> Callable[[OnnxModel], None]:
    """Give each newly loaded model a dynamic batcher, where the settings ask for one."""
    names = {m.strip() for m in settings.predict_batch_models.split(",") if m.strip()}

    def configure(model: OnnxModel) -> None:
        if settings.predict_batch_max_delay_us > 0 and (not names or model.name in names):
            model.batcher = Batcher(
                model,
                max_delay_s=settings.predict_batch_max_delay_us / 1e6,
                max_size=settings.predict_batch_max_size,
                on_batch=metrics.batch,
            )

    return configure


def parse_preload(raw: str) -> list[tuple[Ref, int | None]]:
    """`iris,cancer@production,wine/3` to refs and versions."""
    refs: list[tuple[Ref, int | None]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, _, version = item.partition("/")
        refs.append(infer.parse_target(name, version or None))
    return refs


async def _refresh_forever(cache: ModelCache, settings: PredictSettings) -> None:
    # A registry that is down for a moment must not stop alias following for good; while
    # it is down, one line says so (not one every interval), and one line when it is back.
    failing: str | None = None
    while True:
        await asyncio.sleep(settings.predict_refresh_interval_s)
        try:
            await cache.refresh()
        except KilnError as exc:
            if exc.message != failing:
                log.warning(
                    "refreshing model references failed; serving what is loaded and "
                    "trying again every %g s: %s",
                    settings.predict_refresh_interval_s,
                    exc.message,
                )
            failing = exc.message
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if reason != failing:  # a bug: its traceback once
                log.exception("refreshing model references failed; serving what is loaded")
            failing = reason
        else:
            if failing is not None:
                # WARNING as the line it ends, so that it shows wherever that one did.
                log.warning("refreshing model references works again")
            failing = None


async def _error(_request: Request, exc: Exception) -> Response:
    # Domain errors with their status; anything else a 500 without details (logged).
    return responses.error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    error = cast(StarletteHTTPException, exc)
    response = Response(
        responses.error_body(str(error.detail)),
        status_code=error.status_code,
        media_type="application/json",
    )
    if error.headers:
        response.headers.update(error.headers)
    return response


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


def _registry_keys(settings: PredictSettings) -> KeyRing:
    module = importlib.import_module("services.predict.registry_source")
    factory = cast(Callable[[PredictSettings], KeyRing], module.registry_keys)
    return factory(settings)


def app() -> FastAPI:
    configure(LogSettings(), process="predict")
    return create_app(PredictSettings())
