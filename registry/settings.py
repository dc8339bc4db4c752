"""Where the registry lives. Instantiated only at process entry points."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    """`DATABASE_URL` and `ARTIFACT_DIR`; both default to files under `KILN_HOME`."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kiln_home: Path = Path(".kiln")
    database_url: str = ""
    artifact_dir: Path | None = None

    @model_validator(mode="after")
    def _embedded_defaults(self) -> RegistrySettings:
        home = self.kiln_home.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{home / 'kiln.db'}"
        if self.artifact_dir is None:
            self.artifact_dir = home / "artifacts"
        return self

    @property
    def artifact_root(self) -> Path:
        assert self.artifact_dir is not None  # filled by the validator
        return self.artifact_dir
