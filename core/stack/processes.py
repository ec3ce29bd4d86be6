"""The stack's services that run as plain background processes: S3, MLflow, STAC API, Argo API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from geomlops.settings import LOOPBACK
from geomlops.stack import mlflow_server, process
from geomlops.stack.context import StackContext
from geomlops.stack.postgres import PostgresService
from geomlops.stack.state import PRIVATE_DIR, secret

HEALTH_TIMEOUT = 3.0


class ProcessService:
    """A service we spawn, record in a PID file and probe over HTTP."""

    name: str
    port_roles: tuple[str, ...]
    health_path = "/"
    stop_grace = 20.0
    """Seconds between SIGTERM and SIGKILL."""

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.dir = ctx.paths.service_dir(self.name)
        self.log = ctx.paths.log_file(self.name)
        self.pid_file = ctx.paths.pid_file(self.name)

    @property
    def port(self) -> int:
        return self.ctx.ports[self.port_roles[0]]

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def argv(self) -> Sequence[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return self.ctx.child_env()

    def running(self) -> bool:
        return process.read_pid(self.pid_file) is not None

    def start(self) -> None:
        self.dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        process.spawn(
            self.argv(), log_file=self.log, pid_file=self.pid_file, env=self.env(), cwd=self.dir
        )

    def check(self) -> str | None:
        import httpx  # here, not at the top: `geomlops status` without a stack never needs it

        if not self.running():
            return "not running"
        try:
            response = httpx.get(self.url() + self.health_path, timeout=HEALTH_TIMEOUT)
        except httpx.HTTPError as exc:
            return f"no answer at {self.url()}: {exc.__class__.__name__}"
        if response.status_code >= 400:
            return f"{self.health_path} answered {response.status_code}"
        return None

    def after_healthy(self) -> None:
        """Work to do once the service answers (nothing by default)."""

    def stop(self) -> bool:
        return process.stop(self.pid_file, timeout=self.stop_grace)


class SeaweedService(ProcessService):
    """SeaweedFS in one process: master, volume, filer and the S3 gateway.

    Every listener gets an explicit loopback port (SeaweedFS otherwise derives gRPC ports
    as port+10000 and opens Iceberg and Lance endpoints on fixed ports).

    On SIGTERM its filer waits 15 s for the S3 gateway's metadata stream (inside the same
    process) to end before giving up; we kill it after a short grace instead. Nothing is
    lost: volumes are append-only files and the filer store is a write-ahead-logged
    LevelDB, both replayed on start (the stack's persistence test checks this).

    Answering S3 is not the same as serving objects: after a restart the gateway lists
    buckets from the filer's metadata while the volume server is still registering its
    volumes with the master, and a GET in that window fails with "volume N not found".
    So health also reads a small probe file back through the filer (outside ``/buckets``,
    invisible to S3 clients), which takes the same volume lookup an object GET takes.
    """

    name = "s3"
    port_roles = (
        "s3",
        "s3_grpc",
        "weed_master",
        "weed_master_grpc",
        "weed_volume",
        "weed_volume_grpc",
        "weed_filer",
        "weed_filer_grpc",
    )
    health_path = "/status"
    stop_grace = 3.0
    probe_path = "/.geomlops/health"
    """Filer path of the data-path probe; written once the service is first healthy."""
    probe_body = b"geomlops"
    volume_slots = 100
    """How many volumes the volume server may hold. SeaweedFS grows 7 volumes for each new
    collection (one per bucket, one for the probe file), and ``-volume.max=0`` means "free
    disk / volume size limit": with 27 GB free that is 27 slots, too few for the 35 the
    stack needs, and the last bucket written refuses every PutObject ("failed to find
    writable volumes"). Volumes are not preallocated, so slots cost nothing until data
    fills them, and a nearly full disk still turns volumes read-only (``minFreeSpace``)."""
    election_timeout = "1s"
    """The master's Raft election timeout. It is alone in its cluster, yet on a restart it
    waits a whole timeout (SeaweedFS's default is 10 s) for a leader that will never speak
    before electing itself; nothing else depends on the value."""

    @property
    def credentials(self) -> dict[str, str]:
        s3 = self.ctx.settings.s3
        if s3.access_key is not None and s3.secret_key is not None:
            return {
                "access_key": s3.access_key.get_secret_value(),
                "secret_key": s3.secret_key.get_secret_value(),
            }
        return secret(self.ctx.paths, "s3", {"access_key": 20, "secret_key": 40})

    def _identity_file(self) -> Path:
        """The S3 identities file (written each start; it holds a secret)."""
        creds = self.credentials
        config = {
            "identities": [
                {
                    "name": "geomlops",
                    "credentials": [
                        {"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.ctx.paths.secrets_dir / "s3-identities.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(config))
        return path

    def argv(self) -> Sequence[str]:
        p = self.ctx.ports
        data = self.dir / "data"
        data.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        (data / "master").mkdir(mode=PRIVATE_DIR, exist_ok=True)
        run = self.ctx.paths.run_dir
        return [
            self.ctx.bin("weed"),
            "server",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-dir={data}",
            f"-master.dir={data / 'master'}",
            f"-master.port={p['weed_master']}",
            f"-master.port.grpc={p['weed_master_grpc']}",
            f"-master.electionTimeout={self.election_timeout}",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p['weed_volume']}",
            f"-volume.port.grpc={p['weed_volume_grpc']}",
            f"-volume.max={self.volume_slots}",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['weed_filer']}",
            f"-filer.port.grpc={p['weed_filer_grpc']}",
            f"-filer.localSocket={run / 'weed-filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={run / 'weed-s3.sock'}",
            f"-s3.config={self._identity_file()}",
        ]

    def filer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ctx.ports['weed_filer']}"

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        try:
            self.client().list_buckets()
        except Exception as exc:
            return f"S3 not ready: {exc.__class__.__name__}: {exc}"
        return self._check_data_path()

    def _check_data_path(self) -> str | None:
        """None once stored data can be read (or none was stored yet: a fresh stack)."""
        import httpx

        try:
            response = httpx.get(self.filer_url() + self.probe_path, timeout=HEALTH_TIMEOUT)
        except httpx.HTTPError as exc:
            return f"filer not answering: {exc.__class__.__name__}"
        if response.status_code == 404:
            return None
        if response.status_code != 200 or response.content != self.probe_body:
            return f"stored data not readable yet: {response.status_code} {response.text[:120]}"
        return None

    def client(self):
        import boto3
        from botocore.config import Config

        creds = self.credentials
        return boto3.client(
            "s3",
            endpoint_url=self.url(),
            aws_access_key_id=creds["access_key"],
            aws_secret_access_key=creds["secret_key"],
            region_name=self.ctx.settings.s3.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=HEALTH_TIMEOUT,
                read_timeout=10,
            ),
        )

    def stop(self) -> bool:
        stopped = super().stop()
        # The S3 gateway's gRPC socket has no flag for its path; don't leave it in /tmp.
        Path(f"/tmp/seaweedfs-s3-grpc-{self.ctx.ports.get('s3_grpc')}.sock").unlink(  # noqa: S108
            missing_ok=True
        )
        return stopped

    def after_healthy(self) -> None:
        """Create the platform's buckets (DESIGN.md §7) if missing; write the probe file."""
        import httpx

        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in self.ctx.settings.s3.buckets.values():
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        probe = self.filer_url() + self.probe_path
        if httpx.get(probe, timeout=HEALTH_TIMEOUT).status_code == 404:
            httpx.post(
                probe, files={"file": ("health", self.probe_body)}, timeout=HEALTH_TIMEOUT
            ).raise_for_status()


class MLflowService(ProcessService):
    """MLflow tracking server and model registry: runs in PostgreSQL, artifacts in S3."""

    name = "mlflow"
    port_roles = ("mlflow",)
    health_path = "/health"

    def argv(self) -> Sequence[str]:
        """``mlflow server`` through :mod:`geomlops.stack.mlflow_server`.

        The launcher adds the backend store URL without its password (libpq reads that
        from the environment), so ``ps`` never shows it; the chart starts MLflow the same way.
        """
        settings = self.ctx.settings
        return [
            self.ctx.python, "-m", "geomlops.stack.mlflow_server",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--workers", str(settings.mlflow.workers),
            "--artifacts-destination", f"s3://{settings.s3.bucket_mlflow}",
            "--serve-artifacts",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        # The platform's MLflow account, generated once; the launcher makes it the auth
        # app's administrator, and every client reads it through get_connections.
        secret(self.ctx.paths, "mlflow", {"password": 32})
        seaweed = SeaweedService(self.ctx)
        creds = seaweed.credentials
        return self.ctx.child_env(
            {
                "MLFLOW_S3_ENDPOINT_URL": seaweed.url(),
                "AWS_ACCESS_KEY_ID": creds["access_key"],
                "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
                "AWS_DEFAULT_REGION": self.ctx.settings.s3.region,
                # MLflow 3's server otherwise starts a job runner with seven huey consumers
                # (~1.4 GB) for GenAI evaluation jobs the platform does not use.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                # This stack's PostgreSQL, for the launcher (which hands MLflow only the
                # password, as PGPASSWORD): never an outside DSN left in our environment.
                # As the app role, which owns MLflow's databases and nothing of the catalog.
                mlflow_server.DSN_VARIABLE: PostgresService(self.ctx).app_server_dsn(),
            }
        )

    def after_healthy(self) -> None:
        """Make MLflow open its database store now, while PostgreSQL is known to be up.

        MLflow creates its store at the first API request, and when the database does not
        answer then it retries with doubling sleeps for about an hour (``MAX_RETRY_COUNT``
        in ``mlflow.store.db.utils``), holding every request: a server restarted while
        PostgreSQL is down would hang each client for minutes. ``/health`` never touches the
        store, so one real (read) request to each of its two stores (tracking and model
        registry, created apart) here does. Any answer counts: the store exists by then.
        Behind authentication an anonymous request is refused before it reaches a store,
        so these carry the platform's account.
        """
        import httpx

        password = secret(self.ctx.paths, "mlflow", {"password": 32})["password"]
        for path in ("experiments/search", "registered-models/search"):
            httpx.get(
                f"{self.url()}/api/2.0/mlflow/{path}",
                params={"max_results": 1},
                auth=(self.ctx.settings.mlflow.username, password),
                timeout=self.ctx.settings.stack.startup_timeout,
            )


class StacApiService(ProcessService):
    """The STAC API: stac-fastapi-pgstac built by `geomlops.catalog.api.create_app`."""

    name = "stac"
    port_roles = ("stac",)
    health_path = "/_mgmt/ping"

    def argv(self) -> Sequence[str]:
        return [
            self.ctx.python, "-m", "uvicorn", "geomlops.catalog.api:create_app", "--factory",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--no-access-log",
        ]  # fmt: skip

    def after_healthy(self) -> None:
        """Bootstrap the catalog (collections, queryables, key and audit tables, admin key).

        Run as ``python -m geomlops.catalog.bootstrap`` in the service's environment, as the
        API itself is started by module name: the kernel names the catalog's entry points
        but never imports the catalog (DESIGN.md §2). Idempotent, so it runs on every ``up``.
        """
        process.run_checked(
            [self.ctx.python, "-m", "geomlops.catalog.bootstrap"],
            what="catalog bootstrap",
            log_file=self.log,
            env=self.env(),
        )


class ArgoApiService(ProcessService):
    """The local executor behind Argo Server's REST API (``geomlops.workflows.executor.server``).

    Started by module name, as the STAC API is: the kernel names the entry point but never
    imports ``geomlops.workflows``. Runs it starts are driven by their own background
    processes, so they outlive a restart of this service (and a ``geomlops down``).
    Credentials are checked by the catalog, so it needs no port of its own to start.
    """

    name = "argo"
    port_roles = ("argo",)
    health_path = "/api/v1/version"

    def argv(self) -> Sequence[str]:
        return [
            self.ctx.python, "-m", "uvicorn", "geomlops.workflows.executor.server:create_app",
            "--factory",
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--no-access-log",
        ]  # fmt: skip
