"""The database roles: an owner that migrates, and the app role the platform runs as.

The audit log refuses UPDATE, DELETE and TRUNCATE by trigger, but a superuser can set
``session_replication_role = replica`` (triggers stop firing) and a table's owner can
``DISABLE TRIGGER``; either can then delete rows. So the platform's own services and
commands (the STAC API, MLflow, the CLI, workflow steps) connect as an *app role* that is
neither: no superuser, no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, owner of nothing in
the catalog database, allowed only to read and append the audit log. PgSTAC's own
``pgstac_ingest`` role gives it what reading and writing items needs.

The *owner* (the local cluster's superuser, or a cluster DBA's role) runs ``pypgstac
migrate`` and the catalog bootstrap, which create the tables and call :func:`grant_app`.
MLflow migrates its own schema at start, so its two databases belong to the app role:
they hold nothing the audit log depends on.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

#: What the app role may do in the ``geomlops`` schema, table by table (anything else: no).
APP_TABLE_GRANTS: dict[str, tuple[str, ...]] = {
    "audit_log": ("SELECT", "INSERT"),
    "api_keys": ("SELECT", "INSERT", "UPDATE"),  # keys are revoked by setting revoked_at
    "write_log": ("SELECT", "INSERT"),
}
PGSTAC_ROLE = "pgstac_ingest"
"""PgSTAC's role for reading and writing collections and items (it includes pgstac_read)."""


def ensure_app_role(conn: psycopg.Connection, name: str, password: str) -> None:
    """Create the app role, or reset its attributes and password (idempotent).

    Run as the cluster's superuser. The password is sent once, as a literal of this
    statement, which PostgreSQL does not log unless statement logging is on.
    """
    role = sql.Identifier(name)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
    conn.execute(
        sql.SQL(
            "{verb} {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS INHERIT PASSWORD {password}"
        ).format(verb=verb, role=role, password=sql.Literal(password))
    )


def give_database(conn: psycopg.Connection, database: str, owner: str) -> None:
    """Make ``owner`` own ``database`` and every table, view and sequence in its ``public``.

    For MLflow's databases: a stack made before the app role existed created them (and
    MLflow its tables) as the superuser; MLflow, now the app role, must still migrate them.
    ``conn`` is a superuser connection *to that database*.
    """
    role = sql.Identifier(owner)
    conn.execute(
        sql.SQL("ALTER DATABASE {db} OWNER TO {role}").format(
            db=sql.Identifier(database), role=role
        )
    )
    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {role}").format(role=role))
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
        "AND r.rolname <> %s",
        (owner,),
    ).fetchall()
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    for relname, relkind in rows:
        conn.execute(
            sql.SQL("ALTER {kind} public.{rel} OWNER TO {role}").format(
                kind=sql.SQL(kinds[relkind]), rel=sql.Identifier(relname), role=role
            )
        )


def app_role_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether the role exists (a cluster's DBA may not have made one)."""
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def grant_pgstac(conn: psycopg.Connection, name: str) -> None:
    """PgSTAC's ingest role for the app role (run after ``pypgstac migrate``)."""
    conn.execute(
        sql.SQL("GRANT {pgstac} TO {role}").format(
            pgstac=sql.Identifier(PGSTAC_ROLE), role=sql.Identifier(name)
        )
    )


def grant_app(conn: psycopg.Connection, name: str) -> None:
    """The app role's rights in the ``geomlops`` schema, exactly :data:`APP_TABLE_GRANTS`.

    Everything is revoked first, so a right granted by hand (or by an older version) does
    not survive a bootstrap. Run as the tables' owner, after they exist.
    """
    role = sql.Identifier(name)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA geomlops TO {role}").format(role=role))
    conn.execute(
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA geomlops FROM {role}").format(role=role)
    )
    for table, privileges in APP_TABLE_GRANTS.items():
        conn.execute(
            sql.SQL("GRANT {privileges} ON geomlops.{table} TO {role}").format(
                privileges=sql.SQL(", ").join(sql.SQL(p) for p in privileges),
                table=sql.Identifier(table),
                role=role,
            )
        )
    conn.execute(
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA geomlops TO {role}").format(
            role=role
        )
    )
