"""Client failures that mean "a service is down", as the platform's one error for that.

Apart from :mod:`geomlops.connections` so the CLI can translate any uncaught error without
importing the settings (its `--help` stays light): this module imports only the errors.
"""

from __future__ import annotations

from geomlops.errors import ServiceUnavailable


def database_unavailable(exc: BaseException) -> ServiceUnavailable:
    """The error for a PostgreSQL connection that failed or broke (first line of libpq's)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else exc.__class__.__name__
    return ServiceUnavailable(
        f"PostgreSQL (the catalog and MLflow database) is not answering: {first}",
        hint="`geomlops status` shows which service is down; `geomlops up` restarts it "
        "(or check GEOMLOPS_DB_DSN); then run the command again",
    )


def service_failure(exc: BaseException) -> ServiceUnavailable | None:
    """The platform's error for a client failure that means "a service is down", else None.

    Recognised by class and module name, without importing the clients (the CLI calls this
    on every uncaught error): psycopg's operational errors (PostgreSQL gone or too slow),
    MLflow's failed requests (its server gone, or answering 5xx because its database is),
    and connection failures of the HTTP clients. Anything else is a bug and keeps its
    traceback.
    """
    kind = type(exc)
    module = kind.__module__ or ""
    lineage = {(k.__module__ or "").split(".")[0] + "." + k.__name__ for k in kind.__mro__}
    if lineage & {"psycopg.OperationalError", "psycopg.QueryCanceled"}:
        return database_unavailable(exc)
    if kind.__name__ in ("MlflowException", "RestException") and module.startswith("mlflow"):
        text = str(exc)
        code = str(getattr(exc, "error_code", ""))
        if ("API request to" in text and "failed with" in text) or code in (
            "INTERNAL_ERROR",
            "TEMPORARILY_UNAVAILABLE",
        ):
            first = text.strip().splitlines()[0][:300] if text.strip() else code
            return ServiceUnavailable(
                f"MLflow (tracking server and model registry) is not answering: {first}",
                hint="`geomlops status` shows whether MLflow or the PostgreSQL behind it is "
                "down; `geomlops up` restarts it; then run the command again (`geomlops "
                "reconcile` finds anything a broken command left half done)",
            )
    if module.startswith(("httpx", "requests", "urllib3")) and any(
        word in kind.__name__ for word in ("Connect", "Timeout", "RemoteProtocol")
    ):
        return ServiceUnavailable(
            f"a service of the platform is not answering: {kind.__name__}: {exc}",
            hint="`geomlops status` shows which; `geomlops up` restarts it",
        )
    return None
