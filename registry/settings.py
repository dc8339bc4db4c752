"""Where the registry lives. Instantiated only at process entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    """`DATABASE_URL` and the artifact store; both default to files under `KILN_HOME`.

    `ARTIFACT_STORE=s3` keeps artifacts in an S3-compatible bucket (`S3_BUCKET`,
    `S3_PREFIX`, `S3_ENDPOINT_URL` for MinIO and the like, `S3_REGION`, and
    `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, or boto3's own credential chain when
    those are unset).
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kiln_home: Path = Path(".kiln")
    database_url: str = ""
    artifact_store: Literal["local", "s3"] = "local"
    artifact_dir: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    # API keys (core.access): "auto" requires them when the registry is a database server
    # (PostgreSQL) and lets the embedded SQLite default run open; "required" and "off"
    # say so whatever the database. KILN_AUTH in the environment.
    kiln_auth: Literal["auto", "required", "off"] = "auto"
    # How long a made or revoked key may take to count, in every process.
    auth_key_refresh_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _embedded_defaults(self) -> RegistrySettings:
        home = self.kiln_home.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{home / 'kiln.db'}"
        if self.artifact_dir is None:
            self.artifact_dir = home / "artifacts"
        if self.artifact_store == "s3" and not self.s3_bucket:
            raise ValueError("ARTIFACT_STORE=s3 needs S3_BUCKET (and S3_ENDPOINT_URL off AWS)")
        return self

    @property
    def auth_required(self) -> bool:
        if self.kiln_auth == "auto":
            return not self.database_url.startswith("sqlite")
        return self.kiln_auth == "required"

    @property
    def artifact_root(self) -> Path:
        assert self.artifact_dir is not None  # filled by the validator
        return self.artifact_dir
