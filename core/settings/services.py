"""Settings of the services: the local stack, PostgreSQL, S3, MLflow, the STAC API, auth."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from geomlops.settings.base import config, shared_data


class StackSettings(BaseSettings):
    """Where the local stack keeps its state and how it binds."""

    model_config = config("GEOMLOPS_")

    home: Path = Field(
        default=Path("~/.geomlops"),
        description="State directory: databases, objects, logs, keys. `GEOMLOPS_HOME`.",
    )
    startup_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for one service to become healthy."
    )
    supervise: bool = Field(
        default=True,
        description="`geomlops up` also starts a watchdog that restarts a service whose "
        "process died (`GEOMLOPS_SUPERVISE`); off, only the next `up` restarts it.",
    )
    supervise_interval: float = Field(
        default=2.0, gt=0, description="Seconds between the watchdog's looks at the services."
    )
    supervise_max_backoff: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait of the watchdog before it tries again to restart a service "
        "that failed to start (the wait doubles from `supervise_interval` up to this).",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class DatabaseSettings(BaseSettings):
    """PostgreSQL holding PgSTAC and the MLflow backend store."""

    model_config = config("GEOMLOPS_DB_")

    dsn: SecretStr | None = Field(
        default=None,
        description="An external server as `postgresql://user:pass@host:port` (no database "
        "name); unset means the local stack's own cluster.",
    )
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")
    user: str = Field(
        default="geomlops",
        description="Superuser of the local cluster: the owner that migrates and bootstraps "
        "(used by `geomlops up` only, never by the platform's services).",
    )
    app_user: str = Field(
        default="geomlops_app",
        description="The role the platform runs as (`GEOMLOPS_DB_APP_USER`): no superuser, "
        "owner of nothing in the catalog database, only reads and appends the audit log.",
    )
    owner_dsn: SecretStr | None = Field(
        default=None,
        description="With `GEOMLOPS_DB_DSN` (the app role's), the owner's "
        "`postgresql://user:pass@host:port` for migrations and the catalog bootstrap; unset "
        "means the local stack's superuser, or `GEOMLOPS_DB_DSN` itself on a cluster.",
    )
    bindir: Path | None = Field(
        default=None,
        description="Directory of initdb/pg_ctl; unset finds Debian's PostgreSQL 15.",
    )
    pgstac_database: str = "pgstac"
    mlflow_database: str = "mlflow"
    connect_timeout: int = Field(
        default=5,
        ge=1,
        description="Seconds a client waits for PostgreSQL to accept a connection "
        "(`GEOMLOPS_DB_CONNECT_TIMEOUT`); every client of the platform uses it: the CLI, "
        "the STAC API, MLflow's store, pypgstac.",
    )
    statement_timeout: int = Field(
        default=20,
        ge=1,
        description="Seconds one SQL statement may run before the server cancels it "
        "(`GEOMLOPS_DB_STATEMENT_TIMEOUT`); also the limit on a lock wait.",
    )

    def libpq_options(self) -> dict[str, str]:
        """The timeouts as libpq connection parameters, for a URL's query or ``connect()``.

        ``keepalives_*`` make a client notice a server that vanished without closing the
        socket (a killed host, a cut network) in seconds, not the kernel's two hours.
        """
        ms = self.statement_timeout * 1000
        return {
            "connect_timeout": str(self.connect_timeout),
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
            "keepalives": "1",
            "keepalives_idle": "5",
            "keepalives_interval": "2",
            "keepalives_count": "3",
        }

    mlflow_auth_database: str = Field(
        default="mlflow_auth",
        description="MLflow's basic-auth users and permissions (its own migrations, so its "
        "own database).",
    )


class S3Settings(BaseSettings):
    """The S3-compatible object store (SeaweedFS locally, MinIO or any S3 in a cluster)."""

    model_config = config("GEOMLOPS_S3_")

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
    bucket_audit: str = Field(
        default="audit",
        description="Anchors of the audit log (its head after each append), kept apart from "
        "the database so a deleted tail is seen.",
    )

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
            "audit": self.bucket_audit,
        }


class MLflowSettings(BaseSettings):
    """MLflow tracking server and model registry."""

    model_config = config("GEOMLOPS_MLFLOW_")

    tracking_uri: str | None = Field(
        default=None, description="External tracking server; unset means the local one."
    )
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")
    workers: int = Field(default=1, ge=1, description="Server workers (memory is scarce).")
    request_timeout: int = Field(
        default=10,
        ge=1,
        description="Seconds an MLflow client waits for one answer "
        "(`GEOMLOPS_MLFLOW_REQUEST_TIMEOUT`; MLflow's own default is 120).",
    )
    request_retries: int = Field(
        default=1,
        ge=0,
        description="Retries of a failed MLflow request (`GEOMLOPS_MLFLOW_REQUEST_RETRIES`). "
        "MLflow's default (7, doubling waits) turns a dead server into minutes of silence; "
        "with the timeout, a request to a dead or hung server fails within ~25 s.",
    )

    def client_env(self) -> dict[str, str]:
        """MLflow's own variables bounding its client's requests (read at each request)."""
        return {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.request_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.request_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
        }

    username: str = Field(
        default="geomlops",
        description="The platform's MLflow account (`GEOMLOPS_MLFLOW_USERNAME`): MLflow runs "
        "its basic-auth app, so every request but `/health` needs a credential; the local "
        "stack makes this account its administrator.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password of that account (`GEOMLOPS_MLFLOW_PASSWORD`, from a Secret on a "
        "cluster); unset means the local stack's, generated once into "
        "`$GEOMLOPS_HOME/secrets/mlflow.json` (0600).",
    )


class StacApiSettings(BaseSettings):
    """The STAC API (stac-fastapi-pgstac)."""

    model_config = config("GEOMLOPS_STAC_")

    url: str | None = Field(default=None, description="External STAC API; unset means local.")
    port: int = Field(default=0, ge=0, le=65535, description="Local port; 0 picks a free one.")
    max_body_bytes: int = Field(
        default=4 * 1024**2,
        gt=0,
        description="Largest write (item or collection JSON) the STAC API accepts.",
    )
    max_assets: int = Field(default=256, ge=1, description="Most assets one item may have.")


class CatalogSettings(BaseSettings):
    """STAC validation: where JSON schemas come from (offline first)."""

    model_config = config("GEOMLOPS_")

    schema_mirror: Path | None = Field(
        default_factory=lambda: shared_data("schemas/stac"),
        description="Directory mirroring schema URLs as `<host>/<path>` "
        "(`GEOMLOPS_SCHEMA_MIRROR`); a schema URL is read from here before the network.",
    )
    imagery_max_decoded_bytes: int = Field(
        default=8 * 1024**3,
        gt=0,
        description="Largest scene `geomlops imagery add` accepts, decoded (width x height x "
        "bands x sample size; `GEOMLOPS_IMAGERY_MAX_DECODED_BYTES`).",
    )
    schema_network: bool = Field(
        default=False,
        description="Fetch a schema over the network when the mirror lacks it "
        "(`GEOMLOPS_SCHEMA_NETWORK`); off, so validation never depends on the internet.",
    )


class AuthSettings(BaseSettings):
    """Who may write to (and optionally read) the catalog."""

    model_config = config("GEOMLOPS_AUTH_")

    public_reads: bool = Field(
        default=True,
        description="Anyone may read the catalog; false requires a credential for reads too.",
    )
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer (`iss`) whose bearer tokens are accepted."
    )
    oidc_audience: str | None = Field(
        default=None, description="Audience (`aud`) a bearer token must be issued for."
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="http(s) URL of the issuer's JSON Web Key Set (`jwks_uri`)."
    )
    oidc_roles_claim: str = Field(
        default="roles", description="Token claim holding the identity's roles (a list)."
    )
    oidc_identity_claim: str = Field(
        default="preferred_username",
        description="Token claim naming the identity (falls back to `sub`).",
    )
    oidc_algorithms: list[str] = Field(
        default=["RS256"], description="Signature algorithms accepted for bearer tokens."
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GEOMLOPS_API_KEY"),
        description="Key the CLI and clients send (`GEOMLOPS_API_KEY`); unset means the "
        "administrator key generated by `geomlops up`.",
    )

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(oidc) and not all(oidc):
            raise ValueError(
                "OIDC needs all of GEOMLOPS_AUTH_OIDC_ISSUER, GEOMLOPS_AUTH_OIDC_AUDIENCE and "
                "GEOMLOPS_AUTH_OIDC_JWKS_URL, or none of them"
            )
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Whether bearer tokens from an OIDC issuer are accepted."""
        return self.oidc_issuer is not None


class SampleDataSettings(BaseSettings):
    """Where the sample data the platform uses (imagery, vectors) is looked up."""

    model_config = config("GEOMLOPS_")

    sample_data: Path | None = Field(
        default_factory=lambda: shared_data(""),
        description="Directory holding the sample files under their registry paths "
        "(`GEOMLOPS_SAMPLE_DATA`); unset means `../shared/data` next to the repository when "
        "it exists, else `<GEOMLOPS_HOME>/sample-data`.",
    )
    allow_network: bool = Field(
        default=False,
        description="Download a missing sample file from its public URL "
        "(`GEOMLOPS_ALLOW_NETWORK`); off, so tests and runs never depend on the internet.",
    )

    @field_validator("sample_data")
    @classmethod
    def _absolute_sample_data(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None
