"""Start MLflow's server with the database password outside its command line.

``mlflow server --backend-store-uri postgresql://user:PASSWORD@…`` shows the password to
every local user (``ps``, ``/proc/<pid>/cmdline``), and MLflow copies its arguments into each
worker it starts. The URL MLflow is given here has no password; libpq reads it from
``PGPASSWORD`` in the environment, which only the process owner (and root) can read.

The local stack and the Helm chart both start MLflow through this module
(``python -m geomlops.stack.mlflow_server [mlflow server options]``), so there is one way
the backend URL is formed. The database comes from the platform's settings: the local
stack's PostgreSQL, or ``GEOMLOPS_DB_DSN`` on a cluster.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

from geomlops.errors import ConfigError

#: SQLAlchemy's driver for psycopg 3, which MLflow's store uses.
DRIVER = "postgresql+psycopg"
#: libpq's variable for the password when the connection string has none.
PASSWORD_VARIABLE = "PGPASSWORD"  # noqa: S105 - a variable name, not a password
#: The DSN variable a launcher removes from the environment MLflow inherits.
DSN_VARIABLE = "GEOMLOPS_DB_DSN"


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


def server_command(
    mlflow: str, dsn: str, database: str, options: Sequence[str], env: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` argv and environment: the password in the environment only."""
    url, password = backend_store(dsn, database)
    child = {k: v for k, v in env.items() if k != DSN_VARIABLE}
    if password is not None:
        child[PASSWORD_VARIABLE] = password
    return [mlflow, "server", "--backend-store-uri", url, *options], child


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
    settings = get_settings()
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    # The platform's database timeouts, as libpq parameters in the URL's query (SQLAlchemy
    # hands them to psycopg): MLflow's store fails a request instead of hanging on it.
    timeouts = urlencode(settings.db.libpq_options(), quote_via=quote)
    dsn = f"{get_connections(settings).db_dsn}?{timeouts}"
    args, env = server_command(
        mlflow,
        dsn,
        settings.db.mlflow_database,
        options,
        os.environ,
    )
    os.execvpe(args[0], args, env)  # noqa: S606 - a fixed program, its options are ours


if __name__ == "__main__":
    main()
