"""What a prediction request may carry: the URL guard, size limits, GeoTIFF and band checks.

Small seeded rasters are generated here; the end-to-end behaviour through the running graph
is tested in test_serving.py.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geomlops.ml.raster import local_gdal
from geomlops.serving.inputs import (
    InputPolicy,
    InputRejected,
    RequestImage,
    check_url,
    read_image,
    request_image,
)
from geomlops.settings import get_settings

POLICY = InputPolicy(
    s3_buckets=("imagery",), https_hosts=("data.example.org",), max_bytes=10_000, max_pixels=1024
)
BANDS = ["B2", "B3", "B4"]


def geotiff(
    bands: list[str] = BANDS, size: int = 16, crs: str | None = "EPSG:32630", driver: str = "GTiff"
) -> bytes:
    data = np.random.default_rng(0).integers(1, 5000, (len(bands), size, size), dtype="uint16")
    profile = {"driver": driver, "width": size, "height": size, "count": len(bands)}
    profile |= {"dtype": "uint16", "transform": from_origin(500000, 4200000, 10, 10)}
    if crs:
        profile["crs"] = crs
    with rasterio.MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data)
            for index, name in enumerate(bands, start=1):
                dst.set_band_description(index, name)
        return memory.read()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "scheme 'http' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("/vsicurl/http://example.org/a.tif", "scheme '(none)' is not allowed"),
        ("s3://mlflow/1/model.pt2", "bucket 'mlflow' is not one"),
        ("s3://imagery/", "no object key"),
        ("https://evil.example.com/a.tif", "host 'evil.example.com' is not one"),
        ("https://data.example.org@evil.example.com/a.tif", "credentials"),
        ("https://user:pw@data.example.org/a.tif", "credentials"),
    ],
)
def test_urls_outside_the_allow_list_are_refused(url: str, why: str) -> None:
    with pytest.raises(InputRejected, match=r"jsonData\.url") as error:
        check_url(url, POLICY)
    assert why in error.value.message
    assert error.value.status == 403 and error.value.reason == "URL_NOT_ALLOWED"


@pytest.mark.parametrize(
    "url",
    ["s3://imagery/scenes/a.tif", "https://data.example.org/cog.tif", "https://DATA.example.org/x"],
)
def test_allowed_urls_pass(url: str) -> None:
    check_url(url, POLICY)


def test_default_policy_allows_only_the_imagery_bucket() -> None:
    policy = InputPolicy.from_settings(get_settings())
    assert policy.s3_buckets == (get_settings().s3.bucket_imagery,)
    assert policy.https_hosts == ()


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ([1, 2], 400, "must be a JSON object"),
        ({"ndarray": [[1]]}, 400, "the request holds no image"),
        ({"jsonData": {"url": 42}}, 400, "jsonData.url must be a string"),
        ({"binData": "***"}, 400, "binData is not base64"),
        ({"binData": "A" * 20_000}, 413, "more than the 10000 accepted"),
    ],
)
def test_malformed_requests_are_refused(request_body: object, status: int, message: str) -> None:
    with pytest.raises(InputRejected, match=message) as error:
        request_image(request_body, POLICY, get_settings())
    assert error.value.status == status


def test_bands_are_read_by_name_in_model_order() -> None:
    data = geotiff(["B4", "B8", "B2", "B3"])
    raster = read_image(RequestImage(data, "binData"), BANDS, POLICY)
    assert raster.data.shape == (3, 16, 16)
    with rasterio.MemoryFile(data) as memory, memory.open() as src:
        np.testing.assert_array_equal(raster.data[0], src.read(3).astype("float32"))  # B2
    assert str(raster.crs) == "EPSG:32630"


def test_serving_reads_build_no_cloud_session_even_with_aws_credentials_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pod with S3 keys in its environment made rasterio build a boto3 session per read."""
    import rasterio.session

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    built: list[object] = []
    original = rasterio.session.AWSSession.__init__

    def spy(self: object, *args: object, **kwargs: object) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.session.AWSSession, "__init__", spy)
    image = RequestImage(geotiff(), "binData")
    read_image(image, BANDS, POLICY)
    assert built, "without local_gdal() rasterio builds an AWS session (the test's premise)"
    built.clear()
    with local_gdal():
        raster = read_image(image, BANDS, POLICY)
    assert built == [] and raster.data.shape == (3, 16, 16)


def test_inline_geotiff_round_trips_through_base64() -> None:
    data = geotiff()
    image = request_image({"binData": base64.b64encode(data).decode()}, POLICY, get_settings())
    assert image.data == data and image.source == "binData"


@pytest.mark.parametrize(
    ("data", "status", "reason", "message"),
    [
        (b"PNG\x89 not a tiff", 415, "NOT_GEOTIFF", "binData is not a GeoTIFF"),
        (geotiff(driver="PNG"), 415, "NOT_GEOTIFF", "binData is not a GeoTIFF"),
        (b"II*\x00" + bytes(64), 415, "NOT_GEOTIFF", "cannot be read as a GeoTIFF"),
        (geotiff(crs=None), 400, "BAD_INPUT", "binData has no CRS"),
        (geotiff(["B2", "B3"]), 400, "BAD_INPUT", "binData lacks band\\(s\\) B4"),
        (geotiff(size=40), 413, "INPUT_TOO_LARGE", "40 x 40 pixels, more than the 1024"),
    ],
)
def test_bad_images_are_refused_with_a_status_and_a_message(
    data: bytes, status: int, reason: str, message: str
) -> None:
    with pytest.raises(InputRejected, match=message) as error:
        read_image(RequestImage(data, "binData"), BANDS, POLICY)
    assert (error.value.status, error.value.reason) == (status, reason)
    assert "/vsimem/" not in str(error.value)
