"""The platform's WorkflowTemplates: golden YAML, the Argo schema, the local executor's checks.

The golden file is the reviewed form of each template; a change to a Hera definition shows
up here as a diff. Regenerate on purpose with `GEOMLOPS_REGENERATE_GOLDEN=1 pytest
tests/workflows/test_workflows_render.py` (refused under CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.settings import S3Settings, Settings, TrainingSettings, WorkflowSettings
from geomlops.workflows.executor import LocalExecutor
from geomlops.workflows.schema import ArgoSchema
from geomlops.workflows.templates import all_templates, render

GOLDEN = Path(__file__).parent / "golden"
ARGO_VERSIONS = ("4.1.2", "3.7.18")


def _settings(**training: object) -> Settings:
    """Defaults only: what the environment of the test run says must not leak in."""
    return Settings.model_construct(
        s3=S3Settings.model_construct(),
        training=TrainingSettings.model_construct(**training),
        workflows=WorkflowSettings(),
    )


def _manifests(**training: object) -> dict[str, dict]:
    return {name: render(t) for name, t in all_templates(_settings(**training)).items()}


@pytest.mark.parametrize("name", sorted(_manifests()))
def test_matches_golden_yaml(name: str) -> None:
    rendered = _manifests()[name]
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("GEOMLOPS_REGENERATE_GOLDEN") == "1":
        assert not os.environ.get("CI"), "golden files are never regenerated in CI"
        path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    assert path.exists(), f"no golden file {path}; regenerate with GEOMLOPS_REGENERATE_GOLDEN=1"
    assert yaml.safe_load(path.read_text()) == rendered


@pytest.mark.parametrize("version", ARGO_VERSIONS)
@pytest.mark.parametrize("gpus", [0, 2])
def test_valid_against_argo_schema(version: str, gpus: int) -> None:
    schema = ArgoSchema()
    for name, manifest in _manifests(gpus=gpus).items():
        assert schema.problems(manifest, version) == [], name


def test_local_executor_accepts_every_template(tmp_path: Path) -> None:
    settings = Settings(workflows=WorkflowSettings(state_dir=tmp_path))
    for manifest in _manifests().values():
        params = {
            p["name"]: "x" for p in manifest["spec"]["arguments"]["parameters"] if "value" not in p
        }
        LocalExecutor(settings).validate(manifest, params)


def _pods(manifest: dict) -> dict[str, dict]:
    return {t["name"]: t for t in manifest["spec"]["templates"] if "container" in t}


def test_gpu_pods_follow_the_settings() -> None:
    tolerations = [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    manifest = _manifests(
        gpus=2, gpu_tolerations=tolerations, gpu_node_selector={"accelerator": "h100"}
    )["geomlops-train"]
    pods = _pods(manifest)
    for name in ("train", "evaluate"):
        resources = pods[name]["container"]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "2"
        assert resources["requests"]["nvidia.com/gpu"] == "2"
        assert pods[name]["tolerations"] == tolerations
        assert pods[name]["nodeSelector"] == {"accelerator": "h100"}
        assert pods[name]["container"]["image"] == "{{inputs.parameters.image}}"
    for name in ("resolve", "materialise", "register"):
        assert "resources" not in pods[name]["container"]
        assert "tolerations" not in pods[name]


def test_cpu_only_when_gpus_is_zero() -> None:
    pods = _pods(_manifests(gpus=0)["geomlops-train"])
    for pod in pods.values():
        assert "resources" not in pod["container"]
        assert "tolerations" not in pod and "nodeSelector" not in pod


def test_every_pod_runs_one_geomlops_command() -> None:
    manifest = _manifests()["geomlops-train"]
    for name, pod in _pods(manifest).items():
        assert pod["container"]["command"] == ["geomlops"]
        assert pod["container"]["args"][:2] == ["train-step", name]
    dag = next(t for t in manifest["spec"]["templates"] if t["name"] == "main")["dag"]
    order = [task["name"] for task in dag["tasks"]]
    assert order == [
        "resolve",
        "materialise",
        "train",
        "evaluate",
        "register",
        "approve",
        "approved",
        "rejected",
    ]
    params = {p["name"]: p for p in manifest["spec"]["arguments"]["parameters"]}
    assert all(p.get("description") for p in params.values())
    assert "value" not in params["package"] and "value" not in params["dataset"]
    # No hyperparameter default of the template's own: the package's MLproject decides.
    for name in ("epochs", "batch-size", "learning-rate", "seed"):
        assert params[name]["value"] == "", name


def test_render_cli_writes_each_template(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["workflows", "render", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((tmp_path / "geomlops-train.yaml").read_text())
    assert written["kind"] == "WorkflowTemplate"
    assert written["metadata"]["name"] == "geomlops-train"
