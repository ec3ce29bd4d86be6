"""`geomlops serve manifest`: the SeldonDeployment, checked against the CRD's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.errors import ValidationFailed
from geomlops.serving.manifest import (
    MODEL_CLASS,
    TRANSFORMER_CLASS,
    schema_problems,
    seldon_deployment,
)
from geomlops.settings import get_settings

pytestmark = pytest.mark.skipif(
    get_settings().serving.seldon_schema is None,
    reason="SeldonDeployment schema not present (set GEOMLOPS_SERVING_SELDON_SCHEMA)",
)


def _containers(manifest: dict) -> dict[str, dict]:
    spec = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def test_manifest_is_a_valid_output_transformer_over_model_graph() -> None:
    manifest = seldon_deployment("flood-water-s2")
    assert schema_problems(manifest) == []
    graph = manifest["spec"]["predictors"][0]["graph"]
    assert (graph["name"], graph["type"]) == ("raster-to-vector", "OUTPUT_TRANSFORMER")
    (child,) = graph["children"]
    assert (child["name"], child["type"]) == ("model", "MODEL")
    assert {"name": "model_name", "value": "flood-water-s2", "type": "STRING"} in child[
        "parameters"
    ]
    assert not any(p["name"] == "model_version" for p in child["parameters"])  # production
    containers = _containers(manifest)
    assert {e["value"] for e in containers["model"]["env"]} >= {MODEL_CLASS, "MODEL"}
    assert {e["value"] for e in containers["raster-to-vector"]["env"]} >= {TRANSFORMER_CLASS}
    assert "nvidia.com/gpu" not in json.dumps(manifest)  # CPU unless asked


def test_secrets_are_referenced_never_inlined(monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("GEOMLOPS_S3_ACCESS_KEY", "access-key-17")
    monkeypatch.setenv("GEOMLOPS_S3_SECRET_KEY", "do-not-print-me-42")
    monkeypatch.setenv("GEOMLOPS_SERVING_SECRET", "flood-serving-creds")
    get_settings.cache_clear()
    manifest = seldon_deployment("flood-water-s2")
    assert "do-not-print-me-42" not in json.dumps(manifest)
    assert "access-key-17" not in json.dumps(manifest)
    assert _containers(manifest)["model"]["envFrom"] == [
        {"secretRef": {"name": "flood-serving-creds"}}
    ]


def test_gpu_and_pinned_version_when_asked(monkeypatch, fresh_settings) -> None:
    monkeypatch.setenv("GEOMLOPS_SERVING_GPUS", "1")
    get_settings.cache_clear()
    manifest = seldon_deployment("flood-water-s2", version="3")
    assert schema_problems(manifest) == []
    model = _containers(manifest)["model"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pod = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    child = manifest["spec"]["predictors"][0]["graph"]["children"][0]
    assert {"name": "model_version", "value": "3", "type": "STRING"} in child["parameters"]


def test_schema_catches_what_a_cluster_would_refuse() -> None:
    manifest = seldon_deployment("flood-water-s2")
    predictor = manifest["spec"]["predictors"][0]
    del predictor["graph"]
    predictor["replicas"] = "two"
    problems = schema_problems(manifest)
    assert any("'graph' is a required property" in p for p in problems)
    assert any(p.startswith("spec.predictors.0.replicas") for p in problems)


def test_graph_nodes_need_containers_of_their_name() -> None:
    manifest = seldon_deployment("flood-water-s2")
    _containers(manifest)["model"]["name"] = "renamed"
    spec = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    spec["containers"][0]["name"] = "renamed"
    assert any("node 'model' has no container" in p for p in schema_problems(manifest))


@pytest.mark.parametrize(("example", "valid"), [("iris.yaml", True), ("bad_no_graph.yaml", False)])
def test_the_validator_agrees_with_seldons_own_examples(example: str, valid: bool) -> None:
    folder = Path(get_settings().serving.seldon_schema).parent / "examples"
    document = yaml.safe_load((folder / example).read_text())
    assert (schema_problems(document) == []) is valid


def test_bad_model_name_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="cannot name a SeldonDeployment"):
        seldon_deployment("Flood Water!")


def test_cli_prints_the_same_manifest_as_yaml_and_json() -> None:
    runner = CliRunner()
    as_json = runner.invoke(app, ["serve", "manifest", "flood-water-s2", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == seldon_deployment("flood-water-s2")
    as_yaml = runner.invoke(app, ["serve", "manifest", "flood-water-s2", "--version", "2"])
    assert as_yaml.exit_code == 0
    assert yaml.safe_load(as_yaml.stdout) == seldon_deployment("flood-water-s2", version="2")
    bad = runner.invoke(app, ["serve", "manifest", "Bad Name"])
    assert bad.exit_code == 1 and "cannot name a SeldonDeployment" in bad.stderr
