"""Versioned datasets against the real stack: DVC remote in SeaweedFS, items in PgSTAC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from geomlops.catalog.client import CatalogClient
from geomlops.cli.main import app
from geomlops.connections import Connections
from geomlops.datasets import DatasetRegistry, materialise
from geomlops.datasets.item import remote_object
from geomlops.datasets.materialise import ChecksumMismatch
from geomlops.settings import get_settings

pytestmark = pytest.mark.stack
runner = CliRunner()


def _raster(path: Path, seed: int, when: str) -> None:
    """A 32x32 two-band GeoTIFF in UTM 33N with an acquisition time tag."""
    data = np.random.default_rng(seed).integers(0, 1000, (2, 32, 32), dtype="uint16")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": 32,
        "height": 32,
        "count": 2,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000 + seed * 320, 5_300_000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(TIFFTAG_DATETIME=when)


def _dataset(root: Path) -> Path:
    _raster(root / "chips" / "a.tif", 1, "2021:07:14 10:00:00")
    _raster(root / "chips" / "b.tif", 2, "2021:07:16 10:30:00")
    (root / "README.md").write_text("two chips\n")
    return root


def _invoke(*args: str) -> dict:
    result = runner.invoke(app, ["dataset", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_show_list_materialise(stack: Connections, tmp_path: Path) -> None:
    data = _dataset(tmp_path / "src")
    v1 = _invoke("add", str(data), "--name", "chips-a", "--description", "two chips")
    assert (v1["name"], v1["version"], v1["tag"]) == ("chips-a", "v1", "chips-a@v1")
    assert v1["file_count"] == 3 and v1["md5"].endswith(".dir")
    assert v1["size"] == sum(p.stat().st_size for p in data.rglob("*") if p.is_file())

    item = _invoke("show", "chips-a@v1")["item"]
    props = item["properties"]
    assert props["geomlops:git_rev"] == v1["git_rev"]
    assert props["geomlops:dvc_md5"] == v1["md5"]
    assert props["geomlops:file_count"] == 3 and props["geomlops:size"] == v1["size"]
    assert props["version"] == "v1"
    assert props["start_datetime"].startswith("2021-07-14T10:00:00")
    assert props["end_datetime"].startswith("2021-07-16T10:30:00")
    west, south, east, north = item["bbox"]
    assert 14.9 < west < east < 15.1 and 47.8 < south < north < 47.9  # UTM 33N near 15°E
    asset = item["assets"]["dvc-manifest"]
    assert asset["file:checksum"] == "d510" + v1["md5"].removesuffix(".dir")

    again = _invoke("add", str(data), "--name", "chips-a")
    assert again["tag"] == "chips-a@v1"  # same bytes: nothing new

    (data / "README.md").write_text("two chips, revised\n")
    v2 = _invoke("add", str(data), "--name", "chips-a")
    assert v2["tag"] == "chips-a@v2" and v2["md5"] != v1["md5"]
    assert _invoke("show", "chips-a")["tag"] == "chips-a@v2"
    listed = [v["tag"] for v in _invoke("list") if v["name"] == "chips-a"]
    assert listed == ["chips-a@v1", "chips-a@v2"]

    dest = tmp_path / "out"
    materialise("chips-a@v1", dest)
    assert (dest / "README.md").read_text() == "two chips\n"
    assert (dest / "chips" / "a.tif").read_bytes() == (data / "chips" / "a.tif").read_bytes()


def test_checksum_mismatch_is_refused(stack: Connections, tmp_path: Path) -> None:
    data = _dataset(tmp_path / "src")
    version, _ = DatasetRegistry().add(data, "chips-tampered")
    md5 = _file_md5(data / "chips" / "b.tif")
    bucket, key = remote_object(md5, get_settings().s3.bucket_dvc, "datasets")[5:].split("/", 1)
    stack.s3_client().put_object(Bucket=bucket, Key=key, Body=b"not the chip")

    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatch, match="does not match its recorded checksum"):
        materialise(version.tag, dest)
    assert not dest.exists()
    result = runner.invoke(app, ["dataset", "materialise", version.tag, str(tmp_path / "o2")])
    assert result.exit_code == 1
    assert "chips-tampered@v1 does not match" in result.stderr


def _file_md5(path: Path) -> str:
    from geomlops.datasets.describe import file_md5

    return file_md5(path)


def test_unknown_dataset_or_version(stack: Connections) -> None:
    result = runner.invoke(app, ["dataset", "show", "no-such-data"])
    assert result.exit_code == 1 and "no dataset named 'no-such-data'" in result.stderr
    DatasetRegistry()  # the registry exists from the other tests or is empty: both fine
    result = runner.invoke(app, ["dataset", "show", "Bad Name@v1"])
    assert result.exit_code == 2 and "REF" in result.output


def test_s3_outage_adds_nothing(
    stack: Connections, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    data = _dataset(tmp_path / "src")
    registry = DatasetRegistry()
    registry.ensure_repo()
    head = registry._git("rev-parse", "HEAD")
    monkeypatch.setenv("GEOMLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("GEOMLOPS_S3_ACCESS_KEY", stack.s3_access_key)
    monkeypatch.setenv("GEOMLOPS_S3_SECRET_KEY", stack.s3_secret_key)
    get_settings.cache_clear()
    result = runner.invoke(app, ["dataset", "add", str(data), "--name", "chips-outage"])
    assert result.exit_code == 1
    assert "could not push" in result.stderr and "127.0.0.1:9" in result.stderr
    monkeypatch.undo()
    get_settings.cache_clear()
    registry = DatasetRegistry()
    assert registry._git("rev-parse", "HEAD") == head
    assert registry._git("status", "--porcelain") == ""
    assert "chips-outage" not in registry.names()
    with CatalogClient.from_settings() as catalog:
        assert not list(catalog.iter_search(collections=["datasets"], ids=["chips-outage-v1"]))


def test_a_folder_without_files_is_refused(stack: Connections, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["dataset", "add", str(tmp_path / "empty"), "--name", "nothing"])
    assert result.exit_code == 1 and "holds no files" in result.stderr
    shutil.rmtree(tmp_path / "empty")
