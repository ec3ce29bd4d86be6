"""Generic processors end to end on the local stack, through the local executor.

Both shipped examples are registered (S3 + the `processors` collection, versioned, the same
script idempotent); `geomlops infer` over the Spain chip with the flood model then runs the
per-country processor as the workflow's `process` step, and its result — Spain, with the
water area the run published — is in the run's item, its folder and its lineage. A
processor that fails fails the run with its stderr and leaves the items `incomplete`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from stack_support import production_version, spain_aoi_file
from typer.testing import CliRunner

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.settings import get_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "flood-water-s2"
COUNTRY = "flood-area-by-country"
MMU = "min-mapping-unit"
runner = CliRunner()


def _countries() -> Path:
    folder = get_settings().gateway.vector_dir
    assert folder is not None, "the shared data's vector/countries.geojson is needed"
    return folder / "countries.geojson"


@pytest.fixture(scope="module")
def production(stack: Connections) -> str:
    """A production version of the S2 model: trained by one identity, promoted by another."""
    return production_version(stack, MODEL, "proc")


@pytest.fixture(scope="module")
def spain(stack: Connections, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chip ingested as a scene; returns the AOI file covering it."""
    return spain_aoi_file(tmp_path_factory.mktemp("aoi"))


@pytest.fixture(scope="module")
def registered(stack: Connections) -> dict[str, dict[str, Any]]:
    """Both shipped examples registered through the CLI; their `show --json` rows."""
    rows = {}
    for name, script, params in (
        (COUNTRY, "flood_area_by_country.py", ["--param", f"countries={_countries()}"]),
        (MMU, "min_mapping_unit.py", ["--param", "min_area_m2=2000"]),
    ):
        path = str(REPO / "processors" / script)
        result = runner.invoke(
            app, ["processor", "register", path, "--name", name, *params, "--json"]
        )
        assert result.exit_code == 0, result.output
        rows[name] = json.loads(result.stdout)
    return rows


@pytest.fixture(autouse=True)
def _through_the_local_api(argo: str) -> None:
    """Runs go to the in-process Argo API."""


def _infer(aoi: Path, *args: str) -> Any:
    result = runner.invoke(
        app, ["infer", MODEL, "--aoi", str(aoi), "--datetime", "2019-09-01/2019-09-30", *args,
              "--json"],
    )  # fmt: skip
    if result.exit_code != 0 and "submitted" in result.stderr:
        run = result.stderr.split("submitted", 1)[1].split()[0]
        logs = runner.invoke(app, ["workflows", "logs", run]).stdout
        print(f"--- logs of {run}\n{logs[-6000:]}")  # shown when the test fails
    return result


def _item(item_id: str) -> dict[str, Any]:
    with CatalogClient.from_settings() as catalog:
        return catalog.get_item_dict("predictions", item_id)


def test_registration_stores_catalogues_and_versions(
    registered: dict[str, dict[str, Any]], stack: Connections, tmp_path: Path
) -> None:
    country = registered[COUNTRY]
    assert country["outcome"] == "created" and country["item"] == f"{COUNTRY}-v1"
    assert country["defaults"] == {"countries": str(_countries())}
    assert country["parameters"]["class_name"]["default"] == "water"
    # The script is in S3, byte for byte the file, under the catalogued sha256.
    bucket, key = objects.split(country["script"])
    body = stack.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == (REPO / "processors" / "flood_area_by_country.py").read_bytes()
    assert hashlib.sha256(body).hexdigest() == country["sha256"]

    # The same script and defaults again: nothing changes.
    script = REPO / "processors" / "min_mapping_unit.py"
    again = runner.invoke(
        app,
        ["processor", "register", str(script), "--name", MMU, "--param", "min_area_m2=2000",
         "--json"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["outcome"] == "unchanged"
    assert json.loads(again.stdout)["item"] == f"{MMU}-v1"
    # A changed script is a new version; the old one is deprecated and points at it.
    changed = tmp_path / "min_mapping_unit.py"
    changed.write_text(script.read_text() + "\n# tuned\n")
    result = runner.invoke(app, ["processor", "register", str(changed), "--name", MMU, "--json"])
    assert result.exit_code == 0, result.output
    v2 = json.loads(result.stdout)
    assert v2["item"] == f"{MMU}-v2" and v2["sha256"] != registered[MMU]["sha256"]
    with CatalogClient.from_settings() as catalog:
        v1 = catalog.get_item_dict("processors", f"{MMU}-v1")
    assert v1["properties"]["deprecated"] is True
    assert any(
        link["rel"] == "latest-version" and link["href"].endswith(f"{MMU}-v2")
        for link in v1["links"]
    )
    listed = runner.invoke(app, ["processor", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[MMU]["version"] == 2 and rows[COUNTRY]["version"] == 1
    shown = runner.invoke(app, ["processor", "show", f"{MMU}@1", "--json"])
    assert json.loads(shown.stdout)["deprecated"] is True


def test_infer_runs_the_per_country_processor(
    production: str, spain: Path, registered: dict[str, dict[str, Any]], stack: Connections
) -> None:
    # An undeclared parameter is refused before anything is submitted.
    refused = _infer(spain, "--processor", COUNTRY, "-p", "colour=blue")
    assert refused.exit_code == 1 and "declares colour" in refused.output

    result = _infer(spain, "--processor", COUNTRY, "--processor", f"{MMU}@1")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = summary["run"]
    assert summary["status"] == "COMPLETED"
    assert summary["processing"]["status"] == "complete"

    run_item = _item(run)
    props = run_item["properties"]
    assert props["geomlops:processing"] == "complete"
    by_name = {entry["name"]: entry for entry in props["geomlops:processors"]}
    country = by_name[COUNTRY]
    assert country["version"] == 1 and country["sha256"] == registered[COUNTRY]["sha256"]
    assert country["params"] == {"countries": str(_countries()), "class_name": "water"}
    assert by_name[MMU]["params"]["min_area_m2"] == 2000.0
    assert {link["href"].rsplit("/", 1)[-1] for link in run_item["links"]
            if link["rel"] == "processor"} == {f"{COUNTRY}-v1", f"{MMU}-v1"}  # fmt: skip
    scene_item = _item(f"{run}-Spain_7370579_S2Hand")
    assert scene_item["properties"]["geomlops:processing"] == "complete"

    # The result JSON is stored with the prediction and is the item's asset.
    asset = run_item["assets"][COUNTRY]
    assert asset["href"] == country["result"]
    result_json = objects.read_json(stack, asset["href"])
    (spain_row,) = [r for r in result_json["countries"] if r["country"] == "Spain"]
    water = summary["published"]["stats"]["water_area_km2"]
    assert spain_row["area_km2"] > 0
    # Polygons (geodesic) and pixels (count x pixel area) measure the same water.
    assert spain_row["area_km2"] == pytest.approx(water, rel=0.05), (spain_row, water)
    mmu = objects.read_json(stack, run_item["assets"][MMU]["href"])
    assert mmu["polygons"]["kept"] + mmu["polygons"]["dropped"] == mmu["polygons"]["input"] > 0
    filtered = run_item["assets"][f"{MMU}:filtered.geojson"]
    assert filtered["href"].startswith(f"s3://{get_settings().s3.bucket_predictions}/{run}/")

    lineage = runner.invoke(app, ["lineage", run, "--json"])
    assert lineage.exit_code == 0, lineage.output
    tree = json.loads(lineage.stdout)
    nodes = [c for c in tree["children"] if c["kind"] == "processor"]
    assert {n["label"] for n in nodes} == {f"{COUNTRY} v1", f"{MMU} v1"}
    assert all(n["ok"] for n in nodes)
    assert (
        next(n for n in nodes if n["label"].startswith(COUNTRY))["facts"]["sha256"]
        == (registered[COUNTRY]["sha256"])
    )


def test_a_failing_processor_fails_the_run_and_marks_the_items(
    production: str, spain: Path, stack: Connections, tmp_path: Path
) -> None:
    script = tmp_path / "fails.py"
    script.write_text(
        '"""Always fails."""\nimport sys\n\nPARAMETERS = {}\n\n\n'
        "def process(inputs, params):\n"
        "    print('reading', inputs['vectors'], file=sys.stderr)\n"
        "    raise RuntimeError('deliberate failure for the test')\n"
    )
    result = runner.invoke(app, ["processor", "register", str(script), "--name", "always-fails"])
    assert result.exit_code == 0, result.output

    result = _infer(spain, "--processor", "always-fails")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    run = summary["run"]
    assert summary["status"] == "FAILED"
    assert summary["processing"]["status"] == "incomplete"
    assert "deliberate failure for the test" in summary["error"]
    for item_id in (run, f"{run}-Spain_7370579_S2Hand"):
        props = _item(item_id)["properties"]
        assert props["geomlops:processing"] == "incomplete"
        (entry,) = props["geomlops:processors"]
        assert entry["status"] == "failed" and "deliberate failure" in entry["error"]

    status = runner.invoke(app, ["infer", "status", run])
    assert status.exit_code == 1 and "deliberate failure" in status.output
    lineage = json.loads(runner.invoke(app, ["lineage", run, "--json"]).stdout)
    (node,) = [c for c in lineage["children"] if c["kind"] == "processor"]
    assert not node["ok"] and "deliberate failure" in node["problem"]
