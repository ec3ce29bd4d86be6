"""Offline validation of STAC items: every schema from the mirror, every problem by field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from catalog_items import S2_BANDS, model_dict
from typer.testing import CliRunner

from geomlops.catalog.collections import COLLECTION_IDS, collection_dicts
from geomlops.catalog.mlm import INPUT_BANDS, input_band_names, with_derived_fields
from geomlops.catalog.schemas import SchemaStore
from geomlops.catalog.validation import stac_problems, validate_stac
from geomlops.cli.main import app
from geomlops.errors import ValidationFailed
from geomlops.settings import get_settings

MLM_160 = "https://stac-extensions.github.io/mlm/v1.6.0/schema.json"


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    mirror = get_settings().catalog.schema_mirror
    if mirror is None:
        pytest.skip("no schema mirror (set GEOMLOPS_SCHEMA_MIRROR)")
    return SchemaStore(mirror, allow_network=False)


def _only(problems, rule_prefix):
    return [p for p in problems if p.rule.startswith(rule_prefix)]


def test_platform_model_item_is_valid(store: SchemaStore) -> None:
    item = model_dict("flood-unet-v1")
    assert MLM_160 in item["stac_extensions"]
    assert stac_problems(item, store) == []


def test_collections_are_valid_stac(store: SchemaStore) -> None:
    collections = collection_dicts()
    assert [c["id"] for c in collections] == list(COLLECTION_IDS)
    for collection in collections:
        assert stac_problems(collection, store) == [], collection["id"]


def test_missing_required_mlm_field_names_item_path_and_rule(store: SchemaStore) -> None:
    item = model_dict("no-input")
    del item["properties"]["mlm:input"]
    problems = stac_problems(item, store)
    assert any(
        p.object_id == "no-input"
        and p.path == "$.properties"
        and p.rule == "required (mlm v1.6.0)"
        and "'mlm:input' is a required property" in p.message
        for p in problems
    ), problems


def test_wrong_type_is_reported_at_its_path(store: SchemaStore) -> None:
    item = model_dict("bad-type")
    item["properties"]["mlm:framework"] = 3
    item["properties"]["mlm:input"][0]["input"]["shape"] = "64x64"
    paths = {p.path: p for p in stac_problems(item, store)}
    assert paths["$.properties['mlm:framework']"].rule == "type (mlm v1.6.0)"
    assert "is not of type 'string'" in paths["$.properties['mlm:framework']"].message
    assert "$.properties['mlm:input'][0].input.shape" in paths


def test_unknown_extension_version_is_a_clear_error(store: SchemaStore) -> None:
    item = model_dict("future")
    item["stac_extensions"] = [
        u.replace("v1.6.0", "v9.9.9") if "mlm" in u else u for u in item["stac_extensions"]
    ]
    problems = stac_problems(item, store)
    assert len(_only(problems, "schema-unavailable")) == 1
    message = _only(problems, "schema-unavailable")[0].message
    assert "mlm/v9.9.9/schema.json" in message and "network fallback is off" in message


def test_item_of_an_older_mlm_version_is_accepted(store: SchemaStore) -> None:
    """Items written by others validate against their own MLM version when it resolves."""
    item = model_dict("older")
    item["stac_extensions"] = [
        u.replace("v1.6.0", "v1.5.2") if "mlm" in u else u for u in item["stac_extensions"]
    ]
    assert stac_problems(item, store) == []


def test_invalid_geometry_is_rejected(store: SchemaStore) -> None:
    item = model_dict("bowtie", bbox=(0.0, 0.0, 1.0, 1.0))
    item["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
    }
    problems = _only(stac_problems(item, store), "geometry-valid")
    assert problems and problems[0].path == "$.geometry"
    assert "Self-intersection" in problems[0].message


def test_bbox_must_enclose_geometry(store: SchemaStore) -> None:
    item = model_dict("off", bbox=(0.0, 0.0, 1.0, 1.0))
    item["bbox"] = [10.0, 10.0, 11.0, 11.0]
    assert [p.path for p in _only(stac_problems(item, store), "bbox")] == ["$.bbox"]


def test_datetime_range_with_start_after_end_is_rejected(store: SchemaStore) -> None:
    item = model_dict("backwards")
    item["properties"]["start_datetime"] = "2020-06-01T00:00:00Z"
    item["properties"]["end_datetime"] = "2020-01-01T00:00:00Z"
    problems = _only(stac_problems(item, store), "datetime-range")
    assert [p.path for p in problems] == ["$.properties.end_datetime"]


def test_validate_stac_collects_every_problem_of_every_item(store: SchemaStore) -> None:
    good = model_dict("good")
    bad1 = model_dict("bad1")
    del bad1["properties"]["mlm:name"]
    bad2 = copy.deepcopy(good)
    bad2["id"] = "bad2"
    bad2["properties"]["mlm:tasks"] = ["flying"]
    with pytest.raises(ValidationFailed) as caught:
        validate_stac([good, bad1, bad2], store)
    text = "\n".join(caught.value.problems)
    assert "bad1: $.properties: 'mlm:name' is a required property" in text
    assert "bad2: $.properties['mlm:tasks'][0]: 'flying' is not one of" in text
    assert "good:" not in text


def test_input_bands_are_derived_from_every_input() -> None:
    mlm_input = [
        {"bands": ["B2", {"name": "B3"}, "B2"]},
        {"bands": [{"name": "VV"}]},
        {"bands": []},
    ]
    assert input_band_names(mlm_input) == ["B2", "B3", "VV"]
    item = with_derived_fields({"properties": {"mlm:input": mlm_input}})
    assert item["properties"][INPUT_BANDS] == ["B2", "B3", "VV"]
    assert (
        INPUT_BANDS not in with_derived_fields({"properties": {INPUT_BANDS: ["x"]}})["properties"]
    )
    assert model_dict("m")["properties"][INPUT_BANDS] == S2_BANDS


def test_cli_validate_exit_codes(tmp_path: Path, store: SchemaStore) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(model_dict("good")))
    bad_item = model_dict("bad")
    bad_item["properties"]["mlm:accelerator"] = "abacus"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_item))
    runner = CliRunner()

    ok = runner.invoke(app, ["catalog", "validate", str(good)])
    assert ok.exit_code == 0, ok.output

    failed = runner.invoke(app, ["catalog", "validate", str(good), str(bad)])
    assert failed.exit_code == 1
    assert "bad: $.properties['mlm:accelerator']" in failed.output
    assert "good:" not in failed.output.split("error:", 1)[1]

    missing = runner.invoke(app, ["catalog", "validate", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2
