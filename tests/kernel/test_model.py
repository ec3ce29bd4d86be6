"""geomlops.model: item ids, stages, property names, the MLM reader and the resolution rule.

The resolution tests run on the real stack with model versions registered straight in
MLflow (no training: resolution reads the registry and the catalog, never the weights), and
compare the two transports, the MLflow client and plain REST, answer by answer.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geomlops.connections import Connections
from geomlops.errors import ConflictError, GeomlopsError, NotFoundError, ValidationFailed
from geomlops.model import properties
from geomlops.model.ids import MODELS_COLLECTION, model_item_id, parse_model_item_id
from geomlops.model.io import ModelIO, OutputClass, band_names, class_pairs, parse_classes
from geomlops.model.registry import MlflowClientRegistry, Registry, RestRegistry
from geomlops.model.resolve import NoProductionVersion, ResolvedModel, resolve_model
from geomlops.model.stages import PRODUCTION_ALIAS, STAGE_PROPERTY, STAGE_TAG, Stage

REPO = Path(__file__).resolve().parents[2]
KERNEL = REPO / "core"
MLM = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
SERVING_PYTHON = REPO / ".venv-serving" / "bin" / "python"


# --- ids and stages -------------------------------------------------------------------------
def test_item_id_round_trips_and_other_ids_are_refused() -> None:
    assert model_item_id("flood-water-s2", 3) == "flood-water-s2-mv3"
    assert parse_model_item_id("flood-water-s2-mv12") == ("flood-water-s2", "12")
    assert parse_model_item_id(model_item_id("a-mv1", "2")) == ("a-mv1", "2")
    with pytest.raises(ValidationFailed, match="not the id of a model version item") as error:
        parse_model_item_id("flood-water-s2-0.1.0")  # a package item
    assert "NAME-mvVERSION" in (error.value.hint or "")
    assert MODELS_COLLECTION == "models"


def test_stages_and_where_they_are_recorded() -> None:
    assert [s.value for s in Stage] == [
        "registered",
        "candidate",
        "production",
        "rejected",
        "deprecated",
    ]
    assert STAGE_PROPERTY == properties.STAGE == "geomlops:stage"
    assert STAGE_TAG == "geomlops.stage"
    assert PRODUCTION_ALIAS == "production"


# --- property names -------------------------------------------------------------------------
def _property_constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(properties).items()
        if name.isupper() and name != "PREFIX" and isinstance(value, str)
    }


def test_every_property_name_is_prefixed_unique_and_documented() -> None:
    constants = _property_constants()
    assert len(constants) >= 46
    assert all(v.startswith(properties.PREFIX) for v in constants.values())
    assert all(v == properties.PREFIX + n.lower() for n, v in constants.items())
    assert len(set(constants.values())) == len(constants)
    tree = ast.parse((KERNEL / "model" / "properties.py").read_text())
    body = tree.body
    documented = {
        node.targets[0].id
        for node, after in itertools.pairwise(body)
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }
    assert set(constants) <= documented


def test_no_component_spells_a_property_name_itself() -> None:
    """Outside tests and benchmarks every ``geomlops:*`` name comes from the kernel."""
    literal = re.compile(r"""["']geomlops:[a-z0-9_]+["']""")
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [
        f"{file}:{number}"
        for file in files
        if not file.startswith(("tests/", "bench/")) and file != "core/model/properties.py"
        and (REPO / file).is_file()
        for number, line in enumerate((REPO / file).read_text().splitlines(), start=1)
        if literal.search(line)
    ]  # fmt: skip
    assert offenders == []


# --- the kernel stays a kernel --------------------------------------------------------------
KERNEL_MODULES = (
    *("geomlops.settings", "geomlops.errors", "geomlops.connections", "geomlops.objects"),
    *("geomlops.stack", "geomlops.audit", "geomlops.model"),
)


def test_the_model_contract_imports_only_the_kernel() -> None:
    for path in (KERNEL / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name == "geomlops" or name.startswith("geomlops."):
                    assert name.startswith(KERNEL_MODULES), f"{path.name} imports {name}"


@pytest.mark.skipif(not SERVING_PYTHON.exists(), reason=".venv-serving is missing")
def test_it_imports_in_the_serving_environment_without_mlflow() -> None:
    code = (
        "import sys, geomlops.model, geomlops.model.resolve, geomlops.model.registry; "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'; "
        "from geomlops.model.registry import default_registry, RestRegistry; "
        "print(type(default_registry()).__name__)"
    )
    env = {**os.environ, "GEOMLOPS_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    done = subprocess.run(
        [str(SERVING_PYTHON), "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RestRegistry"


# --- the MLM reader -------------------------------------------------------------------------
def _item(**changes: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    item = copy.deepcopy(MLM)
    for change in changes.values():
        change(item["properties"])
    return item


def test_model_io_reads_inputs_scaling_and_classes() -> None:
    io = ModelIO.from_item(MLM)
    assert io.bands[:3] == ("B1", "B2", "B3") and len(io.bands) == 13
    assert len(io.mean) == len(io.stddev) == 13 and all(s > 0 for s in io.stddev)
    assert io.patch_size == MLM["properties"]["mlm:input"][0]["input"]["shape"][-1]
    assert io.classes == (OutputClass(0, "not_water"), OutputClass(1, "water"))
    assert io.class_names == ["not_water", "water"]


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda props: props.pop(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop("mlm:input"), "its MLM fields lack what inference needs (KeyError('mlm:input'))"),
        (_drop("mlm:output"), "lack what inference needs (KeyError('mlm:output'))"),
        (
            lambda p: p["mlm:input"][0].pop("value_scaling"),
            "lack what inference needs (KeyError('value_scaling'))",
        ),
        (
            lambda p: p["mlm:output"][0]["classification:classes"][1].pop("name"),
            "lack what inference needs (KeyError('name'))",
        ),
        (
            lambda p: p["mlm:output"][0]["classification:classes"][1].update(value="one"),
            "lack what inference needs (ValueError(",
        ),
        (
            lambda p: p["mlm:input"][0]["input"].update(shape=[-1, 13, 64, 32]),
            "mlm:input[0].input.shape [-1, 13, 64, 32] is not square",
        ),
        (
            lambda p: p["mlm:input"][0]["value_scaling"][0].update(stddev=0),
            "mlm:input[0].value_scaling must hold one z-score entry with a non-zero stddev "
            "per band (13)",
        ),
        (
            lambda p: p["mlm:output"][0]["classification:classes"][1].update(value=0),
            "classes are not valid MLM classification classes",
        ),
    ],
)
def test_a_malformed_mlm_item_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(ValidationFailed) as error:
        ModelIO.from_item(_item(change=change))
    assert message in error.value.message
    if "lack" in message:
        assert error.value.message.startswith("model item 'flood-water-s2': ")
        assert "classification:classes" in (error.value.hint or "")
    if "must hold one z-score" in message:
        assert "geomlops.ml.scaling" in (error.value.hint or "")


def test_classes_duplicate_values_name_both_positions() -> None:
    with pytest.raises(ValidationFailed) as error:
        parse_classes([{"value": 1, "name": "a"}, {"value": 1, "name": "b"}, {"name": "x"}])
    assert error.value.problems == [
        "classes[1].value: 1 repeats classes[0]",
        "classes[2].value: Field required",
    ]
    assert parse_classes({"classification:classes": [OutputClass(2, "cloud")]})[0].label == "cloud"


def test_lenient_views_compare_what_is_written() -> None:
    assert band_names({"bands": ["B2", {"name": "B3"}, {"nodata": 0}]}) == ["B2", "B3", None]
    assert band_names({}) == []
    output = {"classification:classes": [{"value": 1, "name": "w", "color_hint": "00f"}, "x"]}
    assert class_pairs(output) == [{"value": 1, "name": "w"}]


# --- the resolution rule on the real stack --------------------------------------------------
@pytest.fixture(scope="module")
def versions(stack: Connections) -> Iterator[dict[str, str]]:
    """A model with v1 production, v2 candidate, v3 rejected, v4 without a catalog item.

    Registered straight in MLflow from one run with a stand-in model folder: resolution
    never opens the weights. A second model is registered with no version at all.
    """
    from mlflow.tracking import MlflowClient

    from geomlops.catalog.client import CatalogClient

    client = MlflowClient(stack.mlflow_tracking_uri)
    name = f"kernel-resolve-{uuid.uuid4().hex[:8]}"
    experiment = client.get_experiment_by_name("kernel-model-test")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("kernel-model-test")
    )
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    client.create_registered_model(f"{name}-unpromoted")
    numbers = {
        stage: str(
            client.create_model_version(
                name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
            ).version
        )
        for stage in ("production", "candidate", "rejected", "no-item")
    }
    with CatalogClient.from_settings() as catalog:
        for stage in ("production", "candidate", "rejected"):
            item = copy.deepcopy(MLM)
            item["id"] = model_item_id(name, numbers[stage])
            item["properties"].update({"version": numbers[stage], STAGE_PROPERTY: stage})
            catalog.upsert_item(item, MODELS_COLLECTION)
    client.set_registered_model_alias(name, PRODUCTION_ALIAS, numbers["production"])
    yield {"name": name, "run_id": run.info.run_id, **numbers}
    with CatalogClient.from_settings() as catalog:
        for stage in ("production", "candidate", "rejected"):
            catalog.delete_item(MODELS_COLLECTION, model_item_id(name, numbers[stage]))
    for model in (name, f"{name}-unpromoted"):
        client.delete_registered_model(model)


TRANSPORTS: dict[str, Callable[[], Registry]] = {
    "mlflow-client": MlflowClientRegistry.from_settings,
    "rest": RestRegistry.from_settings,
}


def _both(name: str, version: str | None = None) -> list[ResolvedModel | GeomlopsError]:
    """What each transport answers: the resolved model, or the error it raised."""
    answers: list[ResolvedModel | GeomlopsError] = []
    for make in TRANSPORTS.values():
        try:
            answers.append(resolve_model(name, version, registry=make()))
        except GeomlopsError as error:
            answers.append(error)
    return answers


def _same_error(answers: list[Any], kind: type[GeomlopsError], message: str) -> GeomlopsError:
    assert all(type(a) is kind for a in answers), answers
    first = answers[0]
    assert all((a.message, a.hint) == (first.message, first.hint) for a in answers)
    assert message in first.message
    return first


@pytest.mark.stack
def test_without_a_version_the_governed_production_decides(versions: dict[str, str]) -> None:
    by_client, by_rest = _both(versions["name"])
    assert by_client == by_rest
    assert isinstance(by_client, ResolvedModel)
    assert (by_client.version, by_client.stage, by_client.alias) == (
        versions["production"],
        "production",
        "production",
    )
    assert by_client.item_id == model_item_id(versions["name"], versions["production"])
    assert by_client.item["id"] == by_client.item_id
    assert by_client.model_uri == f"models:/{versions['name']}/{versions['production']}"
    # runs:/RUN/model without a logged model: the run's artifact folder of that name.
    assert by_client.artifact_uri.endswith(f"{versions['run_id']}/artifacts/model")
    assert by_client.model_file_uri == f"{by_client.artifact_uri}/data/model.pt2"
    assert ModelIO.from_item(by_client.mlm_item).bands == ModelIO.from_item(MLM).bands


@pytest.mark.stack
def test_an_explicit_version_is_used_in_any_stage_but_rejected(versions: dict[str, str]) -> None:
    by_client, by_rest = _both(versions["name"], versions["candidate"])
    assert by_client == by_rest
    assert isinstance(by_client, ResolvedModel)
    assert (by_client.stage, by_client.alias) == ("candidate", None)
    assert not by_client.is_production
    production = _both(versions["name"], versions["production"])
    assert production[0] == production[1] and production[0].alias is None  # type: ignore[union-attr]
    refused = _same_error(
        _both(versions["name"], versions["rejected"]), ConflictError, "was rejected"
    )
    assert f"version {versions['rejected']} was rejected and may not be used" in refused.message


@pytest.mark.stack
def test_missing_things_are_named(versions: dict[str, str]) -> None:
    name = versions["name"]
    found = _same_error(_both(name, versions["no-item"]), NotFoundError, "has no catalog item")
    assert model_item_id(name, versions["no-item"]) in found.message
    _same_error(_both(name, "999"), NotFoundError, f"model {name!r} has no version 999")
    _same_error(_both("no-such-model-anywhere"), NotFoundError, "is not registered in MLflow")
    nothing = _same_error(
        _both(f"{name}-unpromoted"), NoProductionVersion, "has no production version"
    )
    assert "geomlops promote" in (nothing.hint or "")


@pytest.mark.stack
def test_an_alias_moved_behind_governance_is_not_followed(
    versions: dict[str, str], stack: Connections
) -> None:
    """The alias names a candidate: production is still what the catalog's stage records.

    Production was once read from the MLflow alias alone, so whoever could move the alias
    chose what serving and batch inference ran (issue 19, item 3).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.mlflow_tracking_uri)
    client.set_registered_model_alias(versions["name"], PRODUCTION_ALIAS, versions["candidate"])
    try:
        by_client, by_rest = _both(versions["name"])
        assert by_client == by_rest
        assert (by_client.version, by_client.stage) == (versions["production"], "production")  # type: ignore[union-attr]
    finally:
        client.set_registered_model_alias(
            versions["name"], PRODUCTION_ALIAS, versions["production"]
        )


@pytest.mark.stack
def test_two_production_items_are_refused(versions: dict[str, str]) -> None:
    """Two versions recorded production: the governed record is broken, nothing is used."""
    from geomlops.catalog.client import CatalogClient

    name = versions["name"]
    item = copy.deepcopy(MLM)
    item["id"] = model_item_id(name, versions["candidate"])
    item["properties"].update({"version": versions["candidate"], STAGE_PROPERTY: "production"})
    with CatalogClient.from_settings() as catalog:
        catalog.upsert_item(item, MODELS_COLLECTION)
    try:
        error = _same_error(_both(name), ConflictError, "2 production versions")
        assert f"geomlops reconcile {name} --repair" in (error.hint or "")
    finally:
        item["properties"][STAGE_PROPERTY] = "candidate"
        with CatalogClient.from_settings() as catalog:
            catalog.upsert_item(item, MODELS_COLLECTION)


@pytest.mark.stack
@pytest.mark.skipif(not SERVING_PYTHON.exists(), reason=".venv-serving is missing")
def test_serving_refuses_a_rejected_version(versions: dict[str, str]) -> None:
    """The model component, in the serving environment, will not load a rejected version.

    It once resolved a version asked for by number whatever its stage, so a version an
    approver rejected was served.
    """
    code = f"""
from seldon_core.flask_utils import SeldonMicroserviceException
from geomlops.serving.seldon_model import SegmentationModel, _default_resolver
from geomlops.errors import ConflictError
try:
    _default_resolver({versions["name"]!r}, {versions["rejected"]!r})
except ConflictError as error:
    print("resolver:", error.message)
component = SegmentationModel(model_name={versions["name"]!r},
                              model_version={versions["rejected"]!r})
component.load()
try:
    component.predict_raw({{"strData": "x"}})
except SeldonMicroserviceException as error:
    print("component:", error.status_code, error.message)
"""
    done = subprocess.run(
        [str(SERVING_PYTHON), "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    refusal = f"{versions['name']} version {versions['rejected']} was rejected"
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resolver: ") and refusal in lines[0]
    assert lines[1].startswith("component: 503 ") and refusal in lines[1]


def test_resolution_needs_a_running_registry() -> None:
    with pytest.raises(GeomlopsError, match="is not a server"):
        RestRegistry("file:///tmp/mlruns")
