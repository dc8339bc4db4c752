"""Control-plane API: datasets, training jobs and the model registry.

Run: `uvicorn services.api.app:app --factory`. It never imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.logs import LogSettings, configure
from registry import keys as registry_keys
from registry.artifacts import make_artifact_store
from registry.db import in_memory, make_async_engine, make_engine, make_sessionmaker
from registry.migrate import pending_revision
from services import docs, openapi, problems, request_ids
from services.api import dashboard, quotas
from services.api.dispatch import Dispatcher
from services.api.limits import MULTIPART_SLACK, BodyLimit
from services.api.metrics import ApiMetrics, HttpMetrics
from services.api.reads import Reads
from services.api.routes import aliases, datasets, jobs, keys, models, reports, searches, versions
from services.api.sessions import DatabaseProbe, SessionGate
from services.api.sweeper import Sweeper
from services.settings import ApiSettings
from workers.celery_app import make_celery

log = logging.getLogger("kiln.api")
# /healthz's answer comes within this, the database's included (a probe's timeout is
# usually a few seconds more).
HEALTH_TIMEOUT_S = 2.0


def _operation_id(route: APIRoute) -> str:
    # Generated clients get `jobs-submit_job` style method names.
    return f"{route.tags[0]}-{route.name}"


def create_app(settings: ApiSettings) -> FastAPI:
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout_s=settings.database_pool_timeout_s,
        )
        behind = pending_revision(engine, settings.database_url)
        if behind is not None:
            raise RuntimeError(
                f"the registry database is not at schema {behind}; run `kiln db upgrade` first"
            )
        sm = make_sessionmaker(engine)
        dispatcher = Dispatcher(
            make_celery(
                settings.redis_url, settings.broker_dir, settings.broker_visibility_timeout_s
            )
        )
        store = make_artifact_store(settings)
        app.state.keys = registry_keys.key_ring(sm, settings)
        app.state.submissions = quotas.SubmissionLimiter(settings)
        app.state.settings = settings
        app.state.sessionmaker = sm
        # The sync routes' threads; a request holds one only once it has a session slot.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.sessions = SessionGate(
            sm, slots=settings.database_pool_size, timeout_s=settings.database_pool_timeout_s
        )
        # The polled reads' own pool, of the asyncio driver (services/api/reads.py).
        read_engine = None
        if not in_memory(settings.database_url):
            read_engine = make_async_engine(
                settings.database_url,
                pool_size=settings.database_pool_size,
                max_overflow=0,
                pool_timeout_s=settings.database_pool_timeout_s,
            )
        app.state.reads = Reads(
            sm, ttl_s=settings.api_read_cache_s, engine=read_engine, gate=app.state.sessions
        )
        app.state.health = DatabaseProbe(settings.database_url, timeout_s=HEALTH_TIMEOUT_S)
        app.state.store = store
        app.state.dispatcher = dispatcher
        app.state.scrape = metrics.scrape(sm, dispatcher)
        sweeper = Sweeper(
            settings.job_sweep_interval_s,
            sm=sm,
            dispatcher=dispatcher,
            store=store,
            heartbeat_timeout_s=settings.job_heartbeat_timeout_s,
            max_attempts=settings.job_max_attempts,
            requeue_after_s=settings.job_requeue_after_s,
            orphan_grace_s=settings.artifact_orphan_grace_s,
            idempotency_ttl_s=settings.idempotency_key_ttl_s,
        )
        sweeper.start()
        # Read by the first request that needs them, then only in the background.
        keys_task = asyncio.create_task(app.state.keys.keep_fresh())
        try:
            yield
        finally:
            keys_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keys_task
            sweeper.stop()
            await app.state.health.dispose()
            if read_engine is not None:
                await read_engine.dispose()
            engine.dispose()

    app = FastAPI(
        title="Kiln control plane",
        version="0.1.0",
        description="Upload data, train Keras models with k-fold cross-validation, and browse "
        "the registry of ONNX versions.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # As in the predictor: FastAPI's OpenTelemetry hooks look up the global providers
        # on every request even when none is configured (docs/benchmarks.md).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served from the package, not a CDN (services/docs.py).
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    docs.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK)
    # Outside the body limit, so its 413s are counted too.
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    app.include_router(searches.router)
    app.include_router(models.router)
    app.include_router(aliases.router)
    app.include_router(versions.router)
    app.include_router(reports.router)
    app.include_router(keys.router)
    dashboard.install(app, predict_url=settings.dashboard_predict_url)

    @app.get("/healthz", tags=["health"], summary="Health", responses=problems.responses(503))
    async def healthz(request: Request) -> dict[str, str]:
        """200 when this API process runs and its database answers; 503 with Retry-After
        when the database does not answer within 2 s."""
        probe: DatabaseProbe = request.app.state.health
        await probe.check()
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        """HTTP requests by method, route and status; jobs by state and kind, failures by
        reason, job and fold durations (from the registry); messages waiting per queue."""
        body = await to_thread.run_sync(generate_latest, request.app.state.scrape)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    openapi.install(app, finish=problems.document)
    # Around everything, the error handlers included: every line of a request carries its
    # id, and every answer, a 500 too.
    request_ids.install(app)
    return app


@functools.cache
def app() -> FastAPI:
    configure(LogSettings(), process="api")
    return create_app(ApiSettings())
