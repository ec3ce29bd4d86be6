"""PostgreSQL with PostGIS in a cluster of our own under the state directory.

Debian's server binaries are driven directly (``initdb``, ``pg_ctl``) instead of the
distribution's default cluster, so the stack never touches a system database. PostgreSQL
refuses to run as root: when we are root, the server runs as the ``postgres`` user, which
is given ownership of the data directory and, through an ACL, the right to *traverse*
(not list or read) the directories above it, such as ``/root``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from geomlops.connections import APP_SECRET
from geomlops.errors import StackError
from geomlops.settings import LOOPBACK
from geomlops.stack.context import StackContext
from geomlops.stack.state import PRIVATE_DIR, PRIVATE_FILE, secret

APT_HINT = "install it: apt-get update && apt-get install -y postgresql postgresql-15-postgis-3"
SERVER_USER = "postgres"


def _as_root() -> bool:
    return os.geteuid() == 0


def bindir(configured: Path | None = None) -> Path:
    """Directory of the PostgreSQL server binaries (Debian's 15 unless configured)."""
    candidates = (
        [configured]
        if configured
        else [
            Path("/usr/lib/postgresql/15/bin"),
            *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True),
        ]
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    where = f" in {configured} (GEOMLOPS_DB_BINDIR)" if configured else ""
    raise StackError(
        f"PostgreSQL server binaries (initdb, pg_ctl) were not found{where}", hint=APT_HINT
    )


def _check_postgis() -> None:
    share = Path("/usr/share/postgresql")
    if not any(share.glob("*/extension/postgis.control")):
        raise StackError("the PostGIS extension for PostgreSQL is not installed", hint=APT_HINT)


class PostgresService:
    """The database server: PgSTAC's and MLflow's databases."""

    name = "postgres"
    port_roles = ("postgres",)

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.dir = ctx.paths.service_dir("postgres")
        self.data = self.dir / "data"
        self.log = ctx.paths.log_file("postgres")

    # --- helpers ---------------------------------------------------------------------
    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(bindir(self.ctx.settings.db.bindir) / argv[0]), *argv[1:]]
        if _as_root():
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def _give_to_server_user(self, *paths: Path) -> None:
        if not _as_root():
            return
        for path in paths:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _grant_traverse(self) -> None:
        """Let the server user reach its directory and its log, without opening anything else.

        The state directory and ``logs/`` are private (0700): the server user gets an ACL
        entry to pass through them (execute only), not to list or read them.
        """
        if not _as_root():
            return
        self.log.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        ways = [*reversed(self.dir.parents), self.log.parent]
        for parent in dict.fromkeys(ways):
            probe = subprocess.run(
                ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(parent)],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                continue
            if shutil.which("setfacl") is None:
                raise StackError(
                    f"PostgreSQL runs as user '{SERVER_USER}', which cannot enter {parent}",
                    hint="apt-get install -y acl (to grant it traverse rights only), or set "
                    "GEOMLOPS_HOME to a directory outside " + str(parent),
                )
            subprocess.run(["setfacl", "-m", f"u:{SERVER_USER}:x", str(parent)], check=True)

    @property
    def password(self) -> str:
        return secret(self.ctx.paths, "postgres", {"password": 32})["password"]

    @property
    def port(self) -> int:
        return self.ctx.ports["postgres"]

    def dsn(self, database: str = "postgres") -> str:
        return (
            f"host={LOOPBACK} port={self.port} user={self.ctx.settings.db.user} "
            f"password={self.password} dbname={database} connect_timeout=3"
        )

    # --- lifecycle -------------------------------------------------------------------
    def url(self, database: str | None = None, driver: str | None = None) -> str:
        """The server's URL; with ``database``, a full URL with credentials for clients."""
        user = quote(self.ctx.settings.db.user)
        if database is None:
            return f"postgresql://{user}@{LOOPBACK}:{self.port}"
        scheme = driver or "postgresql"
        return f"{scheme}://{user}:{quote(self.password)}@{LOOPBACK}:{self.port}/{database}"

    def server_dsn(self) -> str:
        """``postgresql://user:password@host:port``: the form ``GEOMLOPS_DB_DSN`` takes."""
        user = quote(self.ctx.settings.db.user)
        return f"postgresql://{user}:{quote(self.password)}@{LOOPBACK}:{self.port}"

    def app_server_dsn(self) -> str:
        """``postgresql://app:password@host:port``: the role the platform's services use."""
        user = quote(self.ctx.settings.db.app_user)
        return f"postgresql://{user}:{quote(self.app_password)}@{LOOPBACK}:{self.port}"

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def initialise(self) -> None:
        """Create the cluster once; refuse to touch a data directory that is not one."""
        bindir(self.ctx.settings.db.bindir)
        _check_postgis()
        self.dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self._grant_traverse()
        if self.data.exists() and any(self.data.iterdir()):
            if not (self.data / "PG_VERSION").exists():
                raise StackError(
                    f"{self.data} exists but is not a PostgreSQL data directory",
                    hint=f"move it away (it holds the catalog and MLflow data) or set "
                    f"GEOMLOPS_HOME elsewhere; `rm -rf {self.data}` starts from empty",
                )
            return
        self.data.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        pwfile = self.dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._give_to_server_user(self.dir, self.data, pwfile)
        try:
            result = self._run(
                "initdb",
                "-D", str(self.data),
                "-U", self.ctx.settings.db.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "-E", "UTF8",
                "--locale=C.UTF-8",
                check=False,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise StackError(f"initdb failed:\n{result.stderr.strip()}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# geomlops: loopback only, TCP only (socket paths under deep state\n"
                "# directories can exceed the 107-byte limit of a Unix socket name)\n"
                f"listen_addresses = '{LOOPBACK}'\n"
                "unix_socket_directories = ''\n"
                "shared_buffers = 128MB\n"
                "max_connections = 100\n"
            )

    def start(self) -> None:
        self.initialise()
        self.log.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.log.touch(mode=PRIVATE_FILE)
        self.log.chmod(PRIVATE_FILE)
        self._give_to_server_user(self.log)
        result = self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {self.port}",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()}"
            )

    def check(self) -> str | None:
        import psycopg  # here, not at the top: `geomlops status` without a stack never needs it

        try:
            with psycopg.connect(self.dsn()) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return None

    @property
    def app_password(self) -> str:
        """The app role's password (:mod:`geomlops.stack.roles`), generated once."""
        return secret(self.ctx.paths, APP_SECRET, {"password": 32})["password"]

    def after_healthy(self) -> None:
        """Create the app role and the databases, migrate PgSTAC, grant (all idempotent).

        As the superuser, the owner of the catalog's tables: the platform itself connects
        as the app role, which owns only MLflow's databases.
        """
        import psycopg
        from psycopg import sql

        from geomlops.stack import roles  # psycopg: not for `status` without a stack

        db = self.ctx.settings.db
        app = db.app_user
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            roles.ensure_app_role(conn, app, self.app_password)
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in (db.pgstac_database, db.mlflow_database, db.mlflow_auth_database):
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for name in (db.mlflow_database, db.mlflow_auth_database):
            with psycopg.connect(self.dsn(name), autocommit=True) as conn:
                roles.give_database(conn, name, app)
        url = self.url(db.pgstac_database)
        result = subprocess.run(
            [self.ctx.bin("pypgstac"), "migrate", "--dsn", url],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise StackError(f"pypgstac migrate failed:\n{result.stderr.strip()[-2000:]}")
        with psycopg.connect(self.dsn(db.pgstac_database), autocommit=True) as conn:
            roles.grant_pgstac(conn, app)

    def stop(self) -> bool:
        if not self.running():
            return False
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        return True
