"""Imagery items from GeoTIFFs: COG conversion, footprint, projection and band metadata."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geomlops.catalog.imagery import build_scene_item, read_facts, scene_datetime
from geomlops.catalog.ingest import to_cog
from geomlops.catalog.validation import stac_problems
from geomlops.errors import ValidationFailed
from geomlops.sample_data import fetch

WHEN = datetime(2019, 9, 18, 10, 50, tzinfo=UTC)


def write_raster(path: Path, *, crs: str | None, georeferenced: bool = True, bands: int = 3):
    """A seeded 32x32 uint16 raster; UTM 31N near Madrid-ish coordinates when georeferenced."""
    rng = np.random.default_rng(42)
    profile = {
        "driver": "GTiff",
        "width": 32,
        "height": 32,
        "count": bands,
        "dtype": "uint16",
        "nodata": 0,
    }
    if crs is not None:
        profile["crs"] = crs
    if georeferenced:
        profile["transform"] = from_origin(440_000, 4_480_000, 10, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # wanted for some tests
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(rng.integers(1, 10_000, size=(bands, 32, 32), dtype=np.uint16))
    return path


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(ValidationFailed, match=r"nocrs\.tif: has no CRS"):
        read_facts(path)


def test_raster_without_georeference_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "pixels.tif", crs="EPSG:32631", georeferenced=False)
    with pytest.raises(ValidationFailed, match=r"pixels\.tif: is not georeferenced"):
        read_facts(path)


def test_missing_datetime_asks_for_the_flag(tmp_path: Path) -> None:
    facts = read_facts(write_raster(tmp_path / "scene.tif", crs="EPSG:32631"))
    with pytest.raises(ValidationFailed) as caught:
        scene_datetime(facts, None)
    assert "--datetime" in (caught.value.hint or "")
    assert scene_datetime(facts, WHEN) == WHEN


def test_hls_style_name_gives_the_date(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "HLS.S30.T10TGS.2018285.v1.4.tif", crs="EPSG:32631")
    assert scene_datetime(read_facts(path), None) == datetime(2018, 10, 12, tzinfo=UTC)


def test_utm_scene_becomes_a_valid_item_with_a_wgs84_footprint(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "utm.tif", crs="EPSG:32631")
    cog = tmp_path / "utm-cog.tif"
    to_cog(src, cog)
    assert cog_validate(str(cog), quiet=True)[0]
    item = build_scene_item(cog, item_id="utm", href="s3://imagery/utm/utm.tif", when=WHEN)
    data = item.to_dict(include_self_link=False)
    data["links"] = [{"rel": "collection", "href": "../imagery.json"}]
    assert stac_problems(data) == []
    props = data["properties"]
    assert props["proj:code"] == "EPSG:32631"
    assert props["proj:shape"] == [32, 32]
    west, south, east, north = data["bbox"]
    # 440 to 440.32 km easting, 4480 km northing in UTM 31N: about 2.29-2.30°E, 40.47°N.
    assert 2.28 < west < east < 2.31 and 40.46 < south < north < 40.48
    asset = data["assets"]["image"]
    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert [b["name"] for b in asset["eo:bands"]] == ["b1", "b2", "b3"]
    assert {b["data_type"] for b in asset["raster:bands"]} == {"uint16"}
    assert asset["file:checksum"].startswith("1220") and asset["file:size"] == cog.stat().st_size


def test_sen1floods11_s2_chip_gets_sentinel2_band_metadata(tmp_path: Path) -> None:
    src = fetch("imagery/sen1floods11/Spain_7370579_S2Hand.tif")
    cog = tmp_path / "s2.tif"
    to_cog(src, cog)
    item = build_scene_item(cog, item_id="s2", href="s3://imagery/s2/s2.tif", when=WHEN)
    bands = item.assets["image"].extra_fields["eo:bands"]
    assert [b["name"] for b in bands] == [
        "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"
    ]  # fmt: skip
    by_name = {b["name"]: b for b in bands}
    assert by_name["B8A"]["common_name"] == "nir08" and by_name["B4"]["common_name"] == "red"
    assert item.properties["geomlops:sensor"] == "sentinel-2-l1c"
    # Bounds from SOURCES.md: -0.7819, 38.0828, -0.7359, 38.1288.
    assert item.bbox == pytest.approx([-0.7819, 38.0828, -0.7359, 38.1288], abs=1e-4)


def test_sensor_profile_must_match_band_count(tmp_path: Path) -> None:
    cog = tmp_path / "c.tif"
    to_cog(write_raster(tmp_path / "three.tif", crs="EPSG:32631"), cog)
    with pytest.raises(ValidationFailed, match="has 3 bands, sensor sentinel-1-grd has 2"):
        build_scene_item(cog, item_id="x", href="s3://b/x.tif", when=WHEN, sensor="sentinel-1-grd")
