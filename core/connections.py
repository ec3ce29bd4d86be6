"""How to reach each service: from the settings (a cluster) or the local stack's state.

This is the one place that turns settings and remembered ports into URLs and credentials.
Every component asks :func:`get_connections` instead of building a URL itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from geomlops.errors import StackNotRunning
from geomlops.settings import LOOPBACK, Settings, get_settings
from geomlops.stack.state import StatePaths, existing_secret, load_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class Connections:
    """URLs and credentials of the platform's services."""

    stac_url: str
    mlflow_tracking_uri: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    db_dsn: str
    """``postgresql://user:password@host:port`` without a database name."""

    def db_url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy/libpq URL for ``database`` on the platform's PostgreSQL."""
        scheme, rest = self.db_dsn.split("://", 1)
        return f"{driver if driver != 'postgresql' else scheme}://{rest}/{database}"

    def s3_client(self) -> S3Client:
        """A boto3 S3 client for the object store (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint_url,
            aws_access_key_id=self.s3_access_key,
            aws_secret_access_key=self.s3_secret_key,
            region_name=self.s3_region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def env(self) -> dict[str, str]:
        """Environment variables that point standard tools (mlflow, aws, dvc, GDAL) here."""
        s3 = urlsplit(self.s3_endpoint_url)
        return {
            "STAC_API_URL": self.stac_url,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
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


def _local(ports: dict[str, int], service: str) -> int:
    try:
        return ports[service]
    except KeyError:
        raise StackNotRunning(
            f"the local stack has no {service} service yet",
            hint="run `geomlops up` first (or set the URL of an external service)",
        ) from None


def get_connections(settings: Settings | None = None) -> Connections:
    """Resolve every service's URL and credentials, preferring explicit settings."""
    settings = settings or get_settings()
    paths = StatePaths(settings.stack.home)
    ports: dict[str, int] = {}
    if not (
        settings.stac.url
        and settings.mlflow.tracking_uri
        and settings.s3.endpoint_url
        and settings.db.dsn
    ):
        ports = load_ports(paths)

    s3_creds: dict[str, Any] = {}
    if settings.s3.access_key is not None and settings.s3.secret_key is not None:
        s3_creds = {
            "access_key": settings.s3.access_key.get_secret_value(),
            "secret_key": settings.s3.secret_key.get_secret_value(),
        }
    else:
        s3_creds = existing_secret(paths, "s3") or {}
        if not s3_creds:
            raise StackNotRunning(
                f"no S3 credentials: none set and none generated under {paths.secrets_dir}",
                hint="run `geomlops up` first, or set GEOMLOPS_S3_ACCESS_KEY/SECRET_KEY",
            )

    if settings.db.dsn is not None:
        db_dsn = settings.db.dsn.get_secret_value().rstrip("/")
    else:
        password = (existing_secret(paths, "postgres") or {}).get("password", "")
        db_dsn = (
            f"postgresql://{quote(settings.db.user)}:{quote(password)}"
            f"@{LOOPBACK}:{_local(ports, 'postgres')}"
        )

    return Connections(
        stac_url=settings.stac.url or f"http://{LOOPBACK}:{_local(ports, 'stac')}",
        mlflow_tracking_uri=settings.mlflow.tracking_uri
        or f"http://{LOOPBACK}:{_local(ports, 'mlflow')}",
        s3_endpoint_url=settings.s3.endpoint_url or f"http://{LOOPBACK}:{_local(ports, 's3')}",
        s3_access_key=s3_creds["access_key"],
        s3_secret_key=s3_creds["secret_key"],
        s3_region=settings.s3.region,
        db_dsn=db_dsn,
    )
