"""The one settings object every component reads.

One pydantic-settings class per concern, composed into :class:`Settings`. Each field is
read from a ``GEOMLOPS_*`` environment variable, so the same code runs against the local
stack (where ports are chosen at ``geomlops up`` and remembered in the state directory) and
a cluster (where URLs are given). No other module reads ``os.environ`` for configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", case_sensitive=False)


class StackSettings(BaseSettings):
    """Where the local stack keeps its state and how it binds."""

    model_config = _config("GEOMLOPS_")

    home: Path = Field(
        default=Path("~/.geomlops"),
        description="State directory: databases, objects, logs, keys. `GEOMLOPS_HOME`.",
    )
    startup_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for one service to become healthy."
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class DatabaseSettings(BaseSettings):
    """PostgreSQL holding PgSTAC and the MLflow backend store."""

    model_config = _config("GEOMLOPS_DB_")

    dsn: SecretStr | None = Field(
        default=None,
        description="An external server as `postgresql://user:pass@host:port` (no database "
        "name); unset means the local stack's own cluster.",
    )
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")
    user: str = Field(default="geomlops", description="Superuser of the local cluster.")
    pgstac_database: str = "pgstac"
    mlflow_database: str = "mlflow"


class S3Settings(BaseSettings):
    """The S3-compatible object store (SeaweedFS locally, MinIO or any S3 in a cluster)."""

    model_config = _config("GEOMLOPS_S3_")

    endpoint_url: str | None = Field(
        default=None, description="External endpoint; unset means the local SeaweedFS."
    )
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    region: str = "us-east-1"
    port: int = Field(default=0, ge=0, le=65535, description="Local S3 port; 0 picks a free one.")
    bucket_mlflow: str = Field(default="mlflow", description="MLflow run artifacts.")
    bucket_dvc: str = Field(default="dvc", description="DVC dataset remote.")
    bucket_imagery: str = Field(default="imagery", description="Source imagery COGs.")
    bucket_predictions: str = Field(default="predictions", description="Inference outputs.")

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> S3Settings:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError(
                "set both GEOMLOPS_S3_ACCESS_KEY and GEOMLOPS_S3_SECRET_KEY, or neither"
            )
        return self

    @property
    def buckets(self) -> dict[str, str]:
        """Role → bucket name, the one list of buckets the platform uses (DESIGN.md §7)."""
        return {
            "mlflow": self.bucket_mlflow,
            "dvc": self.bucket_dvc,
            "imagery": self.bucket_imagery,
            "predictions": self.bucket_predictions,
        }


class MLflowSettings(BaseSettings):
    """MLflow tracking server and model registry."""

    model_config = _config("GEOMLOPS_MLFLOW_")

    tracking_uri: str | None = Field(
        default=None, description="External tracking server; unset means the local one."
    )
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")
    workers: int = Field(default=1, ge=1, description="Server workers (memory is scarce).")


class StacApiSettings(BaseSettings):
    """The STAC API (stac-fastapi-pgstac)."""

    model_config = _config("GEOMLOPS_STAC_")

    url: str | None = Field(default=None, description="External STAC API; unset means local.")
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")


class Settings(BaseModel):
    """All settings, one attribute per concern."""

    stack: StackSettings = Field(default_factory=StackSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MLflowSettings = Field(default_factory=MLflowSettings)
    stac: StacApiSettings = Field(default_factory=StacApiSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
