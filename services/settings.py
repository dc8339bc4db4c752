"""Settings of the two HTTP services, read from the environment at their entry points."""

from __future__ import annotations

from typing import Literal

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
    max_upload_bytes: int = 200 * 1024 * 1024


class PredictSettings(RegistrySettings):
    predict_host: str = "127.0.0.1"
    predict_port: int = 8001
    # "auto" asks ONNX Runtime for CUDA when it lists it and keeps whatever the session
    # really got; "cpu" never tries CUDA.
    predict_device: Literal["auto", "cpu"] = "auto"
    # How long "the newest version of a model" is cached before the registry is asked again.
    latest_version_ttl_s: float = 2.0
    max_loaded_models: int = 16
    max_request_bytes: int = 64 * 1024 * 1024
