"""`geomlops imagery add` against the running stack: COG in the bucket, item in the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app as cli
from geomlops.connections import Connections
from geomlops.errors import NotFoundError
from geomlops.sample_data import fetch
from geomlops.settings import get_settings

pytestmark = pytest.mark.stack


def _keys(stack: Connections) -> list[str]:
    bucket = get_settings().s3.bucket_imagery
    listing = stack.s3_client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_real_scene_is_ingested_as_cog_with_item(
    stack: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = fetch("imagery/sen1floods11/Spain_7370579_S1Hand.tif")
    args = ["imagery", "add", str(scene), "--datetime", "2019-09-18T10:50:00Z"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "created\timagery/Spain_7370579_S1Hand\ts3://imagery/" in result.stdout
    with CatalogClient.from_settings() as client:
        item = client.get_item("imagery", "Spain_7370579_S1Hand")
        found = client.iter_search(
            collections=["imagery"],
            bbox=[-0.76, 38.1, -0.75, 38.11],
            datetime="2019-09-18T00:00:00Z/2019-09-18T23:59:59Z",
        )
        assert "Spain_7370579_S1Hand" in {f["id"] for f in found}
    asset = item.assets["image"]
    assert [b["name"] for b in asset.extra_fields["eo:bands"]] == ["VV", "VH"]
    assert item.properties["proj:code"] == "EPSG:4326"
    keys = _keys(stack)
    assert "Spain_7370579_S1Hand/Spain_7370579_S1Hand.tif" in keys
    assert not [k for k in keys if k.startswith("_incoming/")]
    # The object is a valid COG that GDAL reads straight from S3.
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cog_validate("/vsis3/imagery/Spain_7370579_S1Hand/Spain_7370579_S1Hand.tif")[0]
    again = CliRunner().invoke(cli, args)
    assert "unchanged\timagery/Spain_7370579_S1Hand" in again.stdout


def test_file_without_crs_writes_nothing(stack: Connections, tmp_path: Path) -> None:
    bad = tmp_path / "t_nocrs.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8"}
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(bad, "w", **profile) as dst:
            dst.write(np.zeros((1, 32, 32), dtype=np.uint8))
    good = fetch("imagery/sen1floods11/Spain_7370579_LabelHand.tif")
    before = _keys(stack)
    result = CliRunner().invoke(
        cli, ["imagery", "add", str(good), str(bad), "--datetime", "2019-09-18"]
    )
    assert result.exit_code == 1
    assert "t_nocrs.tif: has no CRS" in result.output and "nothing was written" in result.output
    assert _keys(stack) == before
    with CatalogClient.from_settings() as client, pytest.raises(NotFoundError):
        client.get_item("imagery", "Spain_7370579_LabelHand")
