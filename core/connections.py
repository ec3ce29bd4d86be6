"""How to reach each service: from the settings (a cluster) or the local stack's state.

This is the one place that turns settings and remembered ports into URLs and credentials.
Every component asks :func:`get_connections` instead of building a URL itself.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from geomlops.errors import StackNotRunning
from geomlops.settings import LOOPBACK, Settings, get_settings
from geomlops.stack.state import StatePaths, existing_secret, load_ports

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from mypy_boto3_s3 import S3Client


@functools.lru_cache(maxsize=16)
def _s3_client(endpoint_url: str, access_key: str, secret_key: str, region: str) -> S3Client:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


MLFLOW_USER_VARIABLE = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 - a variable name


def _missing(service: str) -> StackNotRunning:
    return StackNotRunning(
        f"no address for the {service} service: the local stack has not started it",
        hint="run `geomlops up` first (or set the URL of an external service)",
    )


@dataclass(frozen=True)
class Connections:
    """URLs and credentials of the platform's services.

    Each address is resolved when it is asked for, so a command that needs only the STAC
    API and MLflow (registration from CI, say) works without database or S3 settings.
    """

    resolved: dict[str, str | None]

    def _get(self, key: str, service: str) -> str:
        value = self.resolved.get(key)
        if value is None:
            raise _missing(service)
        return value

    @property
    def stac_url(self) -> str:
        return self._get("stac_url", "STAC API")

    @property
    def mlflow_tracking_uri(self) -> str:
        return self._get("mlflow_tracking_uri", "MLflow")

    @property
    def mlflow_username(self) -> str | None:
        """The platform's MLflow account (None: a server without authentication)."""
        return self.resolved.get("mlflow_username")

    @property
    def mlflow_password(self) -> str | None:
        return self.resolved.get("mlflow_password")

    def mlflow_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for MLflow's basic auth, or None when none is configured."""
        user, password = self.mlflow_username, self.mlflow_password
        return (user, password) if user and password else None

    def mlflow_env(self) -> dict[str, str]:
        """The variables MLflow's own client reads its credential from, at every request."""
        auth = self.mlflow_auth()
        if auth is None:
            return {}
        return {MLFLOW_USER_VARIABLE: auth[0], MLFLOW_PASSWORD_VARIABLE: auth[1]}

    @property
    def argo_url(self) -> str:
        """The Argo Server API: ``GEOMLOPS_ARGO_SERVER``, else the local stack's ``argo``."""
        return self._get("argo_url", "Argo API")

    @property
    def gateway_url(self) -> str:
        """The gateway: ``GEOMLOPS_GATEWAY_URL``, else the local stack's ``gateway``."""
        return self._get("gateway_url", "gateway")

    @property
    def s3_endpoint_url(self) -> str:
        return self._get("s3_endpoint_url", "S3")

    @property
    def s3_access_key(self) -> str:
        return self._get("s3_access_key", "S3 (access key)")

    @property
    def s3_secret_key(self) -> str:
        return self._get("s3_secret_key", "S3 (secret key)")

    @property
    def s3_region(self) -> str:
        return self._get("s3_region", "S3 (region)")

    @property
    def db_dsn(self) -> str:
        """``postgresql://user:password@host:port`` without a database name."""
        return self._get("db_dsn", "PostgreSQL")

    def db_url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy/libpq URL for ``database`` on the platform's PostgreSQL."""
        scheme, rest = self.db_dsn.split("://", 1)
        return f"{driver if driver != 'postgresql' else scheme}://{rest}/{database}"

    def s3_client(self) -> S3Client:
        """A boto3 S3 client for the object store (path-style addressing).

        One per endpoint and keys in a process, shared by its threads (boto3 clients are
        thread-safe): building one costs ~5 ms of CPU, and the batch worker asked for three
        per tile, on the cores the model runs on.
        """
        return _s3_client(
            self.s3_endpoint_url, self.s3_access_key, self.s3_secret_key, self.s3_region
        )

    def mlflow_client(self) -> MlflowClient:
        """An MLflow client for tracking and the model registry (the same server)."""
        from mlflow.tracking import MlflowClient

        uri = self.mlflow_tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def env(self) -> dict[str, str]:
        """Environment variables that point standard tools (mlflow, aws, dvc, GDAL) here."""
        s3 = urlsplit(self.s3_endpoint_url)
        argo = {}
        if self.resolved.get("argo_url"):  # the `argo` CLI's variables
            url = urlsplit(self._get("argo_url", "Argo API"))
            argo = {
                "ARGO_SERVER": url.netloc,
                "ARGO_HTTP1": "true",
                "ARGO_SECURE": "true" if url.scheme == "https" else "false",
            }
        return {
            **argo,
            "STAC_API_URL": self.stac_url,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            **self.mlflow_env(),
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": self.s3_region,
            "AWS_REGION": self.s3_region,
            # GDAL (rasterio, QGIS) reads /vsis3/ through these.
            "AWS_S3_ENDPOINT": s3.netloc,
            "AWS_HTTPS": "YES" if s3.scheme == "https" else "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }


def get_connections(settings: Settings | None = None) -> Connections:
    """Resolve every service's URL and credentials, preferring explicit settings.

    Nothing here fails for a service that is neither configured nor started; asking the
    result for that service's address does, with a message saying to run `geomlops up`.
    """
    settings = settings or get_settings()
    paths = StatePaths(settings.stack.home)
    external = (settings.stac.url, settings.mlflow.tracking_uri, settings.s3.endpoint_url)
    ports = {} if all(external) and settings.db.dsn else load_ports(paths)

    def local(service: str, scheme: str = "http") -> str | None:
        return f"{scheme}://{LOOPBACK}:{ports[service]}" if service in ports else None

    if settings.s3.access_key is not None and settings.s3.secret_key is not None:
        s3_creds: dict[str, str] = {
            "access_key": settings.s3.access_key.get_secret_value(),
            "secret_key": settings.s3.secret_key.get_secret_value(),
        }
    else:
        s3_creds = existing_secret(paths, "s3") or {}

    if settings.db.dsn is not None:
        db_dsn: str | None = settings.db.dsn.get_secret_value().rstrip("/")
    elif "postgres" in ports:
        password = (existing_secret(paths, "postgres") or {}).get("password", "")
        db_dsn = (
            f"postgresql://{quote(settings.db.user)}:{quote(password)}"
            f"@{LOOPBACK}:{ports['postgres']}"
        )
    else:
        db_dsn = None

    if settings.mlflow.password is not None:
        mlflow_password: str | None = settings.mlflow.password.get_secret_value()
    elif settings.mlflow.tracking_uri is None:
        mlflow_password = (existing_secret(paths, "mlflow") or {}).get("password")
    else:
        mlflow_password = None

    connections = Connections(
        resolved={
            "stac_url": settings.stac.url or local("stac"),
            "argo_url": settings.argo.server or local("argo"),
            "gateway_url": settings.gateway.url or local("gateway"),
            "mlflow_tracking_uri": settings.mlflow.tracking_uri or local("mlflow"),
            "s3_endpoint_url": settings.s3.endpoint_url or local("s3"),
            "s3_access_key": s3_creds.get("access_key"),
            "s3_secret_key": s3_creds.get("secret_key"),
            "s3_region": settings.s3.region,
            "db_dsn": db_dsn,
            "mlflow_username": settings.mlflow.username if mlflow_password else None,
            "mlflow_password": mlflow_password,
        }
    )
    # MLflow's client (MlflowClient, mlflow.log_*, `mlflow run`) reads its credential from
    # these variables at each request, not from an argument: the platform's clients in this
    # process, and the processes it starts, authenticate with the platform's account. The
    # environment, not a command line, so `ps` never shows it.
    os.environ.update(connections.mlflow_env())
    return connections
