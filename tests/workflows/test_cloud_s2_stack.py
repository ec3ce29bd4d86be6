"""cloud-s2 end to end on the local stack: the second model, of another kind and framework.

Registered from this checkout, trained (packaged) and evaluated through `geomlops-train` in
its own environment by one identity, refused promotion by that identity and promoted by an
approver; then served by `geomlops serve` (the local Seldon graph) and batch-run over the
Spain AOI, which publishes a float32 cloud-probability COG. LightGBM and s2cloudless are in
the package's environment only: every one of these paths runs the model in a subprocess
there (``geomlops.ml.serve_worker``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate
from stack_support import SPAIN_CHIP, api_key, promote, sample, spain_aoi_file, train_candidate
from typer.testing import CliRunner

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.errors import GeomlopsError
from geomlops.settings import get_settings
from geomlops.workflows.inference.storage import get_file
from geomlops.workflows.templates.train import run_uri

pytestmark = [pytest.mark.stack, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "cloud-s2"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _through_the_local_api(argo: str) -> None:
    """Runs go to the in-process Argo API, so their pods see the settings set here."""


@pytest.fixture(scope="module")
def production(stack: Connections) -> dict[str, Any]:
    """cloud-s2 trained by one identity, refused to it, promoted by an approver."""
    trainer = api_key("cloud-trainer", "writer", "approver")
    run, registered = train_candidate(stack, MODEL, trainer)
    evaluated = objects.read_json(stack, f"{run_uri(get_settings(), run)}/evaluate.json")
    version = str(registered["model_version"])
    with pytest.raises(GeomlopsError):
        promote(MODEL, version, "the trainer may not approve its own model", trainer)
    promote(MODEL, version, "clear-sky agreement gate met", api_key("cloud-approver", "approver"))
    return {"version": version, "metrics": evaluated["metrics"], "run": run}


def test_trained_in_its_environment_evaluated_and_promoted(production: dict[str, Any]) -> None:
    metrics = production["metrics"]
    assert set(metrics) >= {"val_clear_agreement", "val_cloud_fraction", "val_mean_probability"}
    assert metrics["val_clear_agreement"] > 0.95  # the gate the approver's promotion checked
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("models", f"{MODEL}-mv{production['version']}")
    props = item["properties"]
    assert props["geomlops:stage"] == "production"
    assert props["mlm:framework"] == "LightGBM"
    (output,) = props["mlm:output"]
    assert output["geomlops:threshold"] == 0.4
    model = item["assets"]["model"]
    assert model["mlm:artifact_type"] == "mlflow.pyfunc"
    assert not model["href"].endswith(".pt2")  # the pyfunc model folder, not a program


def test_served_through_the_local_seldon_graph(production: dict[str, Any]) -> None:
    if not (REPO / ".venv-serving" / "bin" / "python").exists():
        pytest.skip(".venv-serving is missing: `make install` builds it")
    env = {**os.environ, "GEOMLOPS_SERVING_SKIP_VALUES": "0"}  # polygons of cloud only
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "geomlops"), "serve", MODEL],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            process.wait(timeout=30)
            pytest.fail(f"geomlops serve exited: {process.stderr.read() if process.stderr else ''}")
        url = json.loads(line)["url"]
        import httpx

        chip = sample(SPAIN_CHIP).read_bytes()
        response = httpx.post(
            f"{url}/api/v1.0/predictions",
            json={"binData": base64.b64encode(chip).decode()},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["meta"]["tags"]["model_name"] == MODEL
        assert answer["meta"]["tags"]["model_version"] == production["version"]
        collection = answer["jsonData"]
        # the threshold polygons (cloud where the probability >= 0.4) and zonal statistics
        assert {f["properties"]["class_name"] for f in collection["features"]} <= {"cloud"}
        stats = collection["geomlops:stats"]
        assert 0 <= stats["mean"] < 0.4  # a clear-sky scene
        assert stats["threshold"] == 0.4
    finally:
        process.terminate()
        process.wait(timeout=60)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_batch_run_over_the_spain_aoi_publishes_a_float_probability_cog(
    production: dict[str, Any], stack: Connections, tmp_path: Path
) -> None:
    aoi = spain_aoi_file(tmp_path)
    result = runner.invoke(
        app,
        ["infer", MODEL, "--aoi", str(aoi), "--datetime", "2019-09-01/2019-09-30", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "COMPLETED"
    (cog_uri,) = summary["published"]["masks"]
    cog = get_file(stack, cog_uri, tmp_path / "cloud.tif")
    assert cog_validate(str(cog), quiet=True)[0]
    with rasterio.open(cog) as src:
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert src.descriptions[0] == "probability" and src.tags()["threshold"] == "0.4"
        values = src.read(1)
    valid = values[~np.isnan(values)]
    assert valid.size > 0.9 * values.size
    assert ((valid >= 0) & (valid <= 1)).all()
    assert (valid >= 0.4).mean() < 0.05  # a clear-sky scene
    item_id = f"{summary['run']}-Spain_7370579_S2Hand"
    with CatalogClient.from_settings() as catalog:
        item = catalog.get_item_dict("predictions", item_id)
    links = {link["href"].rsplit("/", 1)[-1] for link in item["links"]}
    assert f"{MODEL}-mv{production['version']}" in links
