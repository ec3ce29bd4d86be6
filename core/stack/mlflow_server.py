"""Start MLflow's server with the database password outside its command line.

``mlflow server --backend-store-uri postgresql://user:PASSWORD@…`` shows the password to
every local user (``ps``, ``/proc/<pid>/cmdline``), and MLflow copies its arguments into each
worker it starts. The URL MLflow is given here has no password; libpq reads it from
``PGPASSWORD`` in the environment, which only the process owner (and root) can read.

MLflow runs its own basic-auth app (``--app-name basic-auth``), so every request but
``/health`` needs a credential, and moving the ``production`` alias needs one that may
write: the platform's account (``GEOMLOPS_MLFLOW_USERNAME``/``_PASSWORD``), which the auth
app creates as its administrator on first start. Its users live in their own database
(``GEOMLOPS_DB_MLFLOW_AUTH_DATABASE``), named in an auth config file this module writes
without a password (libpq reads ``PGPASSWORD`` for it too); the administrator's password and
the Flask secret travel in the environment only.

The local stack and the Helm chart both start MLflow through this module
(``python -m geomlops.stack.mlflow_server [mlflow server options]``), so there is one way
the backend URL is formed. The database comes from the platform's settings: the local
stack's PostgreSQL, or ``GEOMLOPS_DB_DSN`` on a cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

from geomlops.errors import ConfigError
from geomlops.stack.state import StatePaths

#: SQLAlchemy's driver for psycopg 3, which MLflow's store uses.
DRIVER = "postgresql+psycopg"
#: libpq's variable for the password when the connection string has none.
PASSWORD_VARIABLE = "PGPASSWORD"  # noqa: S105 - a variable name, not a password
#: The DSN variable a launcher removes from the environment MLflow inherits.
DSN_VARIABLE = "GEOMLOPS_DB_DSN"
#: MLflow's own app that authenticates every request (``mlflow server --app-name``).
AUTH_APP = "basic-auth"
AUTH_CACHE_SECONDS = 60
"""How long a worker trusts a password it checked (a changed one is refused within this)."""
AUTH_CONFIG_FILE = "mlflow-basic-auth.ini"
"""Under ``$GEOMLOPS_HOME/secrets``: the auth app's settings (no password in it)."""


def backend_store(dsn: str, database: str) -> tuple[str, str | None]:
    """Split ``postgresql://user:password@host:port`` into a password-free URL and the password.

    Returns ``(DRIVER://user@host:port/database, password)``; the password is URL-decoded,
    as libpq wants it. A DSN with a database already named is refused: the platform's DSN
    names the server only (README "Configuration"), and which database MLflow uses is a
    separate setting.
    """
    parts = urlsplit(dsn.rstrip("/"))
    if parts.scheme not in ("postgresql", "postgres", DRIVER) or not parts.hostname:
        raise ConfigError(
            "the PostgreSQL DSN is not a postgresql://USER:PASSWORD@HOST:PORT URL",
            hint="set GEOMLOPS_DB_DSN to postgresql://USER:PASSWORD@HOST:PORT",
        )
    if parts.path not in ("", "/"):
        raise ConfigError(
            "the PostgreSQL DSN names a database; it must name the server only",
            hint="drop the /DATABASE part; GEOMLOPS_DB_MLFLOW_DATABASE names MLflow's",
        )
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"  # still URL-encoded, as it came
    url = urlunsplit((DRIVER, netloc, f"/{database}", parts.query, ""))
    password = unquote(parts.password) if parts.password is not None else None
    return url, password


def auth_config(auth_database_url: str) -> str:
    """The basic-auth app's config: users in ``auth_database_url``; reads need a login too.

    ``default_permission = READ``: an authenticated account may read what it was not granted
    explicitly, and only an account with a grant (the platform's administrator) may write,
    so an unauthenticated request gets 401 and a read-only account's alias move 403.
    """
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        # configparser interpolates '%': the URL's query (the timeouts) is percent-encoded.
        f"database_uri = {auth_database_url.replace('%', '%%')}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # A checked password is remembered for a minute: checking one costs a PBKDF2 hash
        # (~1 s of a busy core), which every request paid without it.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
        "auth_cache_max_size = 1000\n"
    )


def write_auth_config(path: Path, auth_database_url: str) -> Path:
    """Write :func:`auth_config` to ``path`` (0600, replaced whole)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(auth_config(auth_database_url))
    partial.replace(path)
    return path


def server_command(
    mlflow: str,
    dsn: str,
    database: str,
    options: Sequence[str],
    env: Mapping[str, str],
    *,
    auth: tuple[str, str] | None = None,
    auth_database: str | None = None,
    auth_config_path: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` argv and environment: every password in the environment only.

    With ``auth`` (the administrator's user and password), ``auth_database`` and
    ``auth_config_path``, MLflow runs its basic-auth app with its users in that database.
    """
    url, password = backend_store(dsn, database)
    child = {k: v for k, v in env.items() if k != DSN_VARIABLE}
    if password is not None:
        child[PASSWORD_VARIABLE] = password
    argv = [mlflow, "server", "--backend-store-uri", url, *options]
    if auth is not None and auth_database is not None and auth_config_path is not None:
        auth_url, _ = backend_store(dsn, auth_database)
        write_auth_config(auth_config_path, auth_url)
        child["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path)
        child["MLFLOW_AUTH_ADMIN_USERNAME"], child["MLFLOW_AUTH_ADMIN_PASSWORD"] = auth
        # Signs the UI's CSRF tokens; any value shared by the workers of one start will do.
        child.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        argv += ["--app-name", AUTH_APP]
    return argv, child


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with ``mlflow server`` (same pid, so PID files stay true)."""
    from geomlops.connections import get_connections
    from geomlops.settings import get_settings

    options = list(sys.argv[1:] if argv is None else argv)
    if "--backend-store-uri" in options:
        raise ConfigError(
            "the backend store is the platform's database; don't pass --backend-store-uri",
            hint="set GEOMLOPS_DB_DSN and GEOMLOPS_DB_MLFLOW_DATABASE instead",
        )
    if "--app-name" in options:
        raise ConfigError(
            f"MLflow always runs its {AUTH_APP} app here; don't pass --app-name",
            hint="its account comes from GEOMLOPS_MLFLOW_USERNAME and GEOMLOPS_MLFLOW_PASSWORD",
        )
    settings = get_settings()
    connections = get_connections(settings)
    auth = connections.mlflow_auth()
    if auth is None:
        raise ConfigError(
            "MLflow needs the platform's account to start behind authentication, and "
            "no password is set",
            hint="set GEOMLOPS_MLFLOW_PASSWORD (a Secret on a cluster; `geomlops up` "
            "generates one locally)",
        )
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    # The platform's database timeouts, as libpq parameters in the URL's query (SQLAlchemy
    # hands them to psycopg): MLflow's store fails a request instead of hanging on it.
    timeouts = urlencode(settings.db.libpq_options(), quote_via=quote)
    dsn = f"{connections.db_dsn}?{timeouts}"
    args, env = server_command(
        mlflow,
        dsn,
        settings.db.mlflow_database,
        options,
        os.environ,
        auth=auth,
        auth_database=settings.db.mlflow_auth_database,
        auth_config_path=StatePaths(settings.stack.home).secrets_dir / AUTH_CONFIG_FILE,
    )
    # The account's password is MLflow's to know as its administrator's, not as a client.
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(variable, None)
    os.execvpe(args[0], args, env)  # noqa: S606 - a fixed program, its options are ours


if __name__ == "__main__":
    main()
