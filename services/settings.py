"""Settings of the two HTTP services, read from the environment at their entry points."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.settings import RegistrySettings
from workers.settings import BrokerSettings


class ApiSettings(RegistrySettings, BrokerSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # A running job whose worker has not written a heartbeat for this long is taken as
    # lost: it is queued again (up to job_max_attempts) or failed with that reason.
    job_heartbeat_timeout_s: float = 120.0
    job_max_attempts: int = 3
    job_sweep_interval_s: float = 15.0
    # A queued job whose message went out this long ago and was not claimed is sent again
    # (its message may have been lost in a broker restart). A duplicate is harmless: only
    # one delivery can claim a queued job. With the sweep interval, a lost message is sent
    # again within a minute of the broker's return.
    job_requeue_after_s: float = Field(default=30.0, gt=0)
    # Files a deleted version leaves unreferenced are removed by the sweeper this long
    # after the delete: longer than any one registration's upload (registry.orphans).
    artifact_orphan_grace_s: float = Field(default=600.0, ge=0)
    # How long a submission's Idempotency-Key answers the same again (services/api/idempotency.py).
    idempotency_key_ttl_s: float = Field(default=86400.0, gt=0)
    max_upload_bytes: int = 200 * 1024 * 1024
    # Database connections per API process (docs/decisions/0022): requests wait for one of
    # DATABASE_POOL_SIZE session slots in the event loop, before they take a thread or a
    # connection, and get a 503 after DATABASE_POOL_TIMEOUT_S; the overflow is for the
    # sweeper and the key ring. Each process holds up to size + overflow + 1 (/healthz).
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=5, ge=0)
    database_pool_timeout_s: float = Field(default=5.0, gt=0)
    # Threads the sync routes run in (anyio's limiter; its own default is 40).
    api_threads: int = Field(default=40, ge=1)
    # uvicorn processes for the API; each has its own pool.
    api_workers: int = Field(default=1, ge=1)
    # How long a process keeps the answers of the polled reads (GET /jobs/{id}, /models,
    # /models/{name}); its own writes clear them at once (services/api/reads.py). 0: off.
    api_read_cache_s: float = Field(default=1.0, ge=0)
    # Quotas per API key (services/api/quotas.py; 0 or "" turns one off). Submissions are
    # jobs, retrains and dataset uploads, counted across API processes when REDIS_URL is
    # set; active jobs are the key's queued and running ones.
    quota_submissions: str = "60/minute"
    quota_active_jobs: int = Field(default=20, ge=0)
    # A spec's size: its model's parameters, and epochs × rows × (k_folds + 1) fits.
    spec_max_parameters: int = Field(default=100_000_000, ge=1)
    spec_max_epoch_rows: int = Field(default=200_000_000, ge=1)
    # Where this API reaches the prediction service for the dashboard's predict form
    # (/ui/predict/…, services/api/dashboard.py); `kiln up` sets it to its predictor.
    dashboard_predict_url: str = "http://127.0.0.1:8001"


class PredictSettings(RegistrySettings):
    predict_host: str = "127.0.0.1"
    predict_port: int = 8001
    # uvicorn worker processes; each builds its own ORT sessions after the fork.
    predict_workers: int = Field(default=1, ge=1)
    # "auto" asks ONNX Runtime for CUDA when it lists it and keeps whatever the session
    # really got; "cpu" never tries CUDA.
    predict_device: Literal["auto", "cpu"] = "auto"
    # Refs loaded (and warmed) before the server reports ready: "iris,cancer@production,x/3".
    predict_preload: str = ""
    # How often the refs in use (`name`, `name@alias`) are checked against the registry.
    predict_refresh_interval_s: float = Field(default=0.5, gt=0)
    predict_cache_max_models: int = Field(default=16, ge=1)
    # 0: no bound on bytes (the ONNX files' sizes, a proxy for the sessions' memory).
    predict_cache_max_bytes: int = Field(default=0, ge=0)
    predict_max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Requests one process serves at once; past it, 503 with Retry-After (0: no bound).
    predict_max_in_flight: int = Field(default=512, ge=0)
    # Per API key and process, e.g. "1000/second" ("": none); checked with the key.
    predict_rate_limit: str = ""
    # Dynamic batching; off (0) by default: for tiny models on a CPU it costs more than it
    # saves. PREDICT_BATCH_MODELS limits it to some model names (empty: all).
    predict_batch_max_delay_us: int = Field(default=0, ge=0)
    predict_batch_max_size: int = Field(default=32, ge=1)
    predict_batch_models: str = ""
