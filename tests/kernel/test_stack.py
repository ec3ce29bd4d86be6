"""The local stack: health, loopback binding, idempotent up, persistence, self-healing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.connections import Connections, get_connections
from geomlops.stack.manager import LocalStack
from geomlops.stack.postgres import PostgresService
from geomlops.stack.process import read_pid
from geomlops.stack.processes import SeaweedService
from geomlops.stack.state import load_ports

pytestmark = [pytest.mark.stack, pytest.mark.slow]

runner = CliRunner()


def _our_pids(stack: LocalStack) -> dict[str, set[int]]:
    """PIDs of each service's process tree (PostgreSQL from its postmaster.pid)."""
    pids: dict[str, set[int]] = {}
    for service in stack.services():
        if service.name == "postgres":
            first = (stack.paths.service_dir("postgres") / "data" / "postmaster.pid").read_text()
            root = psutil.Process(int(first.splitlines()[0]))
        else:
            record = read_pid(stack.paths.pid_file(service.name))
            assert record is not None, service.name
            root = psutil.Process(record.pid)
        pids[service.name] = {root.pid, *(c.pid for c in root.children(recursive=True))}
    return pids


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def _alive(pid: int) -> bool:
    """True for a live process (a zombie waiting for a parent that never reaps is dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stac_item(item_id: str) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": "stack-test",
        "geometry": {"type": "Point", "coordinates": [-3.7, 40.4]},
        "bbox": [-3.7, 40.4, -3.7, 40.4],
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [],
        "assets": {},
    }


def _write_headers(stack: LocalStack) -> dict[str, str]:
    """Credentials for STAC writes, if the catalog has issued an administrator key."""
    path = stack.paths.secrets_dir / "admin_api_key.json"
    if not path.exists():
        return {}
    return {"X-API-Key": json.loads(path.read_text())["key"]}


def test_status_reports_every_service_healthy_on_loopback(local_stack: LocalStack) -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    statuses = json.loads(result.stdout)
    assert [s["name"] for s in statuses] == ["postgres", "s3", "mlflow", "stac", "argo", "gateway"]
    assert all(s["healthy"] for s in statuses), statuses
    assert all("127.0.0.1" in s["url"] for s in statuses)

    for name, pids in _our_pids(local_stack).items():
        addresses = _listening(pids)
        assert addresses, f"{name} listens nowhere"
        assert {ip for ip, _ in addresses} == {"127.0.0.1"}, (name, addresses)


def test_up_twice_is_harmless(local_stack: LocalStack) -> None:
    before = _our_pids(local_stack)
    ports = load_ports(local_stack.paths)
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert "already running" in result.stderr
    assert _our_pids(local_stack) == before
    assert load_ports(local_stack.paths) == ports


def test_env_points_plain_tools_at_the_stack(stack: Connections, tmp_path: Path) -> None:
    bucket = "imagery"
    script = f"""
set -euo pipefail
eval "$(geomlops env)"
mlflow experiments create --experiment-name env-test-{uuid.uuid4().hex[:8]} >/dev/null
mlflow experiments search --view all
python - <<'EOF'
import boto3  # endpoint, keys and region come from the environment only
s3 = boto3.client("s3")
s3.put_object(Bucket="{bucket}", Key="env-test/hello.txt", Body=b"hello")
print("s3:", s3.get_object(Bucket="{bucket}", Key="env-test/hello.txt")["Body"].read().decode())
EOF
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "AWS_")) and k != "STAC_API_URL"
    }
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "env-test-" in done.stdout
    assert "s3: hello" in done.stdout


def test_data_survives_down_and_up(local_stack: LocalStack, stack: Connections) -> None:
    import mlflow

    # A STAC item, an MLflow run with an artifact in S3, and an S3 object.
    headers = _write_headers(local_stack)
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "stack-test",
        "description": "persistence test",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }
    item_id = f"persist-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.stac_url, headers=headers, timeout=30) as api:
        assert api.post("/collections", json=collection).status_code in (200, 201, 409)
        created = api.post("/collections/stack-test/items", json=_stac_item(item_id))
        assert created.status_code in (200, 201), created.text

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    os.environ.update(stack.env())
    experiment = client.create_experiment(f"persist-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "iou", 0.81)
    artifact = Path(os.environ["GEOMLOPS_HOME"]) / "artifact.txt"
    artifact.write_text("model card")
    client.log_artifact(run.info.run_id, str(artifact))

    s3 = stack.s3_client()
    s3.put_object(Bucket="predictions", Key="persist/object.bin", Body=b"\x00\x01payload")

    pids = set().union(*_our_pids(local_stack).values())
    local_stack.down()
    survivors = [p for p in pids if _alive(p)]
    assert not survivors, f"processes of ours survived `down`: {survivors}"
    statuses = local_stack.status()
    assert not any(s.running for s in statuses)

    local_stack.up()
    stack = get_connections()
    with httpx.Client(base_url=stack.stac_url, timeout=30) as api:
        assert api.get(f"/collections/stack-test/items/{item_id}").status_code == 200
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    restored = client.get_run(run.info.run_id)
    assert restored.data.metrics["iou"] == pytest.approx(0.81)
    downloaded = client.download_artifacts(run.info.run_id, "artifact.txt", str(artifact.parent))
    assert Path(downloaded).read_text() == "model card"
    body = stack.s3_client().get_object(Bucket="predictions", Key="persist/object.bin")["Body"]
    assert body.read() == b"\x00\x01payload"


def test_every_platform_bucket_takes_writes(local_stack: LocalStack) -> None:
    """Each bucket is its own SeaweedFS collection, which must find room for its volumes."""
    client = SeaweedService(local_stack.ctx).client()
    for bucket in local_stack.settings.s3.buckets.values():
        client.put_object(Bucket=bucket, Key="tests/writable.txt", Body=bucket.encode())
        body = client.get_object(Bucket=bucket, Key="tests/writable.txt")["Body"].read()
        assert body == bucket.encode()
        client.delete_object(Bucket=bucket, Key="tests/writable.txt")


def test_s3_data_probe_is_readable_and_invisible_to_s3(local_stack: LocalStack) -> None:
    """Health reads a probe file back through the filer; S3 clients never see it."""
    seaweed = SeaweedService(local_stack.ctx)
    probe = httpx.get(seaweed.filer_url() + seaweed.probe_path)
    assert probe.status_code == 200 and probe.content == seaweed.probe_body
    buckets = {b["Name"] for b in seaweed.client().list_buckets()["Buckets"]}
    assert set(local_stack.settings.s3.buckets.values()) <= buckets
    assert not [b for b in buckets if "geomlops" in b or b.startswith(".")]


@pytest.mark.parametrize("victim", ["mlflow", "s3", "stac", "argo", "gateway", "postgres"])
def test_killed_service_is_restored_by_up(paused_watchdog: LocalStack, victim: str) -> None:
    """`up` alone restores a dead service (the watchdog, which would race it, is paused)."""
    local_stack = paused_watchdog
    s3 = get_connections().s3_client()
    key = f"heal/{victim}.txt"
    s3.put_object(Bucket="imagery", Key=key, Body=victim.encode())

    before = _our_pids(local_stack)[victim]
    root = min(before)
    if victim == "postgres":
        root = int(
            (local_stack.paths.service_dir("postgres") / "data" / "postmaster.pid")
            .read_text()
            .splitlines()[0]
        )
    os.kill(root, signal.SIGKILL)
    if psutil.pid_exists(root):
        psutil.Process(root).wait(timeout=10)  # reap it if it was our child
    assert not all(s.healthy for s in local_stack.status())

    statuses = local_stack.up()
    assert all(s.healthy for s in statuses), statuses
    # Workers of the killed process (MLflow's uvicorn, say) do not linger, holding its port.
    assert not [p for p in before if _alive(p)], "processes of the killed service survived"
    body = get_connections().s3_client().get_object(Bucket="imagery", Key=key)["Body"]
    assert body.read() == victim.encode()


def test_no_service_shows_the_database_password_in_its_command_line(
    local_stack: LocalStack,
) -> None:
    """``ps`` shows every local user each process's arguments: no secret may be there.

    MLflow's server and each worker it starts are read from /proc, as ``ps`` reads them.
    """
    password = PostgresService(local_stack.ctx).password
    assert len(password) >= 16
    for name, pids in _our_pids(local_stack).items():
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue  # a worker that ended while we looked
            assert password.encode() not in cmdline, f"{name} pid {pid} shows the password"
            assert quote(password).encode() not in cmdline, f"{name} pid {pid}"
    mlflow = _our_pids(local_stack)["mlflow"]
    assert len(mlflow) > 1, "expected MLflow's workers to be checked too"
    # It still reaches its database: the registry answers.
    connections = get_connections()
    answer = httpx.get(
        f"{connections.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/search",
        auth=connections.mlflow_auth(),  # MLflow answers only the platform's account
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
