"""Broker and worker settings. `REDIS_URL` set: Redis; unset: a broker folder under `KILN_HOME`."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.settings import RegistrySettings


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kiln_home: Path = Path(".kiln")
    redis_url: str | None = None
    # Longer than the longest training job, so Redis does not hand a running job's
    # message to a second worker (design.md: the default is one hour).
    broker_visibility_timeout_s: int = 12 * 3600

    @property
    def broker_dir(self) -> Path:
        return self.kiln_home.resolve() / "broker"


class WorkerSettings(RegistrySettings, BrokerSettings):
    worker_heartbeat_interval_s: float = 2.0
    # Each job runs in a fresh child process: TensorFlow's memory is returned when it ends.
    worker_max_tasks_per_child: int = 1
    worker_concurrency: int = 1
