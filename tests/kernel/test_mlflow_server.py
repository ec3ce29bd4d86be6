"""MLflow's launcher: the database password goes to the environment, never to argv."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from geomlops.errors import ConfigError
from geomlops.stack.mlflow_server import (
    DSN_VARIABLE,
    PASSWORD_VARIABLE,
    backend_store,
    server_command,
)

PASSWORD = "p@ss:w/rd %41"
DSN = f"postgresql://geo%20mlops:{quote(PASSWORD, safe='')}@db.example:5432"


def test_url_has_no_password_and_the_password_is_decoded() -> None:
    url, password = backend_store(DSN, "mlflow")
    assert url == "postgresql+psycopg://geo%20mlops@db.example:5432/mlflow"
    assert password == PASSWORD


def test_command_carries_no_secret_and_environment_does() -> None:
    argv, env = server_command(
        "mlflow", DSN, "mlflow", ["--port", "5000"], {DSN_VARIABLE: DSN, "HOME": "/h"}
    )
    shown = " ".join(argv)
    assert PASSWORD not in shown and quote(PASSWORD, safe="") not in shown
    assert argv[:4] == [
        "mlflow",
        "server",
        "--backend-store-uri",
        "postgresql+psycopg://geo%20mlops@db.example:5432/mlflow",
    ]
    assert argv[4:] == ["--port", "5000"]
    # The DSN (password inside) is not passed on; libpq's own variable is.
    assert env == {"HOME": "/h", PASSWORD_VARIABLE: PASSWORD}


def test_a_dsn_without_password_sets_none() -> None:
    _, env = server_command("mlflow", "postgresql://u@h:1", "m", [], {})
    assert PASSWORD_VARIABLE not in env


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("mysql://u:p@h:1", "not a postgresql"),
        ("postgresql://u:p@h:1/other", "names a database"),
    ],
)
def test_bad_dsn_is_refused_with_the_fix(dsn: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        backend_store(dsn, "mlflow")
    assert "p@" not in str(info.value)


def test_the_auth_config_keeps_a_percent_encoded_database_url() -> None:
    """The auth store's URL carries the timeouts percent-encoded; configparser must read it back.

    MLflow reads the file with ``ConfigParser``, whose interpolation refused the URL's ``%20``
    and stopped MLflow from starting.
    """
    import configparser

    from geomlops.stack.mlflow_server import auth_config

    url = (
        "postgresql+psycopg://geomlops_app@127.0.0.1:5432/mlflow_auth?connect_timeout=5"
        "&options=-c%20statement_timeout%3D20000"
    )
    parser = configparser.ConfigParser()
    parser.read_string(auth_config(url))
    assert parser["mlflow"]["database_uri"] == url
