"""The chart's wiring runs: its rendered platform containers, started as Kubernetes would.

The bundled profile (examples/laptop.yaml) is rendered with the local stack's credentials
as values; its hook Jobs and Deployments (migration, buckets, bootstrap, STAC API, MLflow)
run as local processes with exactly the rendered command, arguments and environment
(tests/charts/wiring.py), against the local stack's PostgreSQL and S3, which stand in for
the bundled infrastructure images. Then a model package is registered and the catalog
searched through them, with the environment a workflow pod gets from the platform Secret.
A broken copy of the chart (an env name, a probe path) must fail, naming what broke.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
from chart_support import CHART, REPO, by_kind, example, merged, render
from wiring import PATH, VENV_BIN, LocalCluster, WiringError

from geomlops.catalog.bootstrap import admin_key
from geomlops.connections import APP_SECRET, get_connections
from geomlops.settings import get_settings
from geomlops.stack.manager import LocalStack
from geomlops.stack.state import StatePaths, existing_secret, load_ports

pytestmark = [pytest.mark.stack, pytest.mark.slow]
PACKAGE = "flood-water-s2"


def _values(profile: str = "laptop") -> dict[str, Any]:
    """A profile's values with the local stack's credentials where the chart takes them.

    ``laptop`` bundles PostgreSQL and S3: their passwords and keys are values. For
    ``production`` (external PostgreSQL and S3) the stack's services are the external ones:
    their addresses are values, their credentials in existing Secrets (:func:`_operator_secrets`).
    """
    settings = get_settings()
    paths = StatePaths(settings.stack.home)
    postgres = existing_secret(paths, "postgres") or {}
    s3 = existing_secret(paths, "s3") or {}
    values = example(profile)
    databases = {"pgstac": settings.db.pgstac_database, "mlflow": settings.db.mlflow_database}
    values["postgresql"] = {**values.get("postgresql", {}), "databases": databases}
    values["objectStore"] = {**values.get("objectStore", {}), "buckets": settings.s3.buckets}
    values["objectStore"]["region"] = settings.s3.region
    if values["postgresql"]["mode"] == "bundled":
        values["postgresql"]["bundled"] = {
            "user": settings.db.user,
            "password": postgres["password"],
            "appUser": settings.db.app_user,
            "appPassword": (existing_secret(paths, APP_SECRET) or {})["password"],
        }
    if values["objectStore"]["mode"] == "external":
        values["objectStore"]["external"] = {
            **values["objectStore"]["external"],
            "endpointUrl": f"http://127.0.0.1:{load_ports(paths)['s3']}",
        }
    else:
        values["objectStore"]["accessKey"] = s3["access_key"]
        values["objectStore"]["secretKey"] = s3["secret_key"]
    values["auth"] = {"adminApiKey": admin_key(settings)}
    # The chart's MLflow shares the stack's auth database, whose administrator exists.
    mlflow = existing_secret(paths, "mlflow") or {}
    values["mlflow"] = {**values.get("mlflow", {}), "password": mlflow["password"]}
    return values


def _operator_secrets(profile: str) -> list[dict[str, Any]]:
    """The Secrets an operator creates before installing (README's existing-secret contract)."""
    values = merged(_values(profile))
    paths = StatePaths(get_settings().stack.home)
    secrets = []
    db, s3 = values["postgresql"], values["objectStore"]
    if db["mode"] == "external":
        secrets.append(
            {
                "kind": "Secret",
                "metadata": {"name": db["external"]["existingSecret"]},
                # An external server's one DSN is the owner's (it migrates); the platform
                # role the stack made is found and granted by the migrate Job.
                "stringData": {db["external"]["dsnKey"]: get_connections().db_owner_dsn},
            }
        )
    if s3["mode"] == "external":
        creds = existing_secret(paths, "s3") or {}
        secrets.append(
            {
                "kind": "Secret",
                "metadata": {"name": s3["external"]["existingSecret"]},
                "stringData": {
                    s3["external"]["accessKeyKey"]: creds["access_key"],
                    s3["external"]["secretKeyKey"]: creds["secret_key"],
                },
            }
        )
    return secrets


def _cluster(objects: list[dict[str, Any]], workdir: Path) -> LocalCluster:
    ports = load_ports(StatePaths(get_settings().stack.home))
    values = merged(example("laptop"))
    return LocalCluster(
        objects=objects,
        platform_image=f"{values['image']['repository']}:{values['image']['tag']}",
        # The bundled infrastructure's Services -> the local stack's services.
        infrastructure={"geomlops-postgresql": ports["postgres"], "geomlops-s3": ports["s3"]},
        workdir=workdir,
    )


@pytest.fixture(params=["laptop", "production"])
def installed(
    request: pytest.FixtureRequest, local_stack: LocalStack, tmp_path: Path
) -> Iterator[LocalCluster]:
    """The profile installed: bundled (laptop) or external PostgreSQL and S3 (production)."""
    profile = request.param
    cluster = _cluster(render(_values(profile)) + _operator_secrets(profile), tmp_path / "pods")
    try:
        cluster.install()
        yield cluster
    finally:
        cluster.stop()


def _workflow_pod_env(cluster: LocalCluster) -> dict[str, str]:
    """What a workflow pod's environment holds: the WorkflowTemplate's env, resolved."""
    wt = by_kind(cluster.objects, "WorkflowTemplate")["geomlops-train"]
    resolve = next(t for t in wt["spec"]["templates"] if t["name"] == "resolve")
    return cluster.environment(wt, {**resolve["container"], "name": "resolve"})


def _cli(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(VENV_BIN / "geomlops"), *args],
        env={"PATH": PATH, "HOME": str(home), "GEOMLOPS_HOME": str(home / "state"), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_rendered_platform_runs_and_serves_the_cli(installed: LocalCluster, tmp_path: Path) -> None:
    cluster = installed
    names = {s.where for s in cluster.started}
    assert {
        "Job/geomlops-migrate container migrate",
        "Job/geomlops-buckets container buckets",
        "Job/geomlops-bootstrap container bootstrap",
        "Deployment/geomlops-stac container stac",
        "Deployment/geomlops-mlflow container mlflow",
    } <= names

    env = _workflow_pod_env(cluster)
    stac = cluster.url("geomlops-stac", 8080)
    mlflow = cluster.url("geomlops-mlflow", 5000)
    assert env["GEOMLOPS_STAC_URL"] == stac
    assert env["GEOMLOPS_MLFLOW_TRACKING_URI"] == mlflow
    assert cluster.problems == []

    registered = _cli(
        env, tmp_path / "cli", "package", "register", f"model_packages/{PACKAGE}",
        "--git-url", str(REPO), "--json",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    item_id = json.loads(registered.stdout)["item_id"]

    found = _cli(env, tmp_path / "cli", "catalog", "search", "-c", "models", "--json")
    assert found.returncode == 0, found.stderr
    assert item_id in {f["id"] for f in json.loads(found.stdout)["features"]}

    # No rendered process shows the database password (``ps`` shows every local user).
    password = (existing_secret(StatePaths(get_settings().stack.home), "postgres") or {})[
        "password"
    ]
    for started in cluster.started:
        if started.process.poll() is not None:
            continue  # a hook Job that has finished
        root = psutil.Process(started.process.pid)
        for proc in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                shown = " ".join(proc.cmdline())
                assert password not in shown, f"{started.where}: pid {proc.pid} shows it"
                assert quote(password) not in shown, f"{started.where}: pid {proc.pid}"

    # The registered model went through the rendered MLflow server (the registry behind it).
    import httpx

    # MLflow runs its basic-auth app: the platform's account (from the chart's Secret) reads,
    # nobody reads without one.
    url = f"{mlflow}/api/2.0/mlflow/registered-models/get"
    anonymous = httpx.get(url, params={"name": PACKAGE}, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    account = (get_settings().mlflow.username, env["GEOMLOPS_MLFLOW_PASSWORD"])
    answer = httpx.get(url, params={"name": PACKAGE}, auth=account, timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_broken_chart_fails_naming_object_and_field(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    broken = tmp_path / "chart"
    shutil.copytree(CHART, broken)
    stac = broken / "templates" / "stac.yaml"
    stac.write_text(
        stac.read_text().replace("- name: GEOMLOPS_STAC_PORT", "- name: GEOMLOPS_STAC_PROT")
    )
    mlflow = broken / "templates" / "mlflow.yaml"
    mlflow.write_text(mlflow.read_text().replace("path: /health", "path: /healthz", 1))

    cluster = _cluster(render(_values(), chart=broken), tmp_path / "pods")
    try:
        with pytest.raises(WiringError) as info:
            cluster.install(hooks=False)
    finally:
        cluster.stop()
    message = str(info.value)
    assert "Deployment/geomlops-stac container stac args[3]: $(GEOMLOPS_STAC_PORT)" in message
    assert (
        "Deployment/geomlops-mlflow container mlflow readinessProbe.httpGet: GET /healthz"
        in message
    )
