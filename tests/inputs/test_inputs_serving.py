"""Hostile prediction requests, read as the model component reads them (:func:`request_image`).

The GeoTIFFs such a request carries are the GeoTIFF module's cases; these are the messages
around them: bodies that are not Seldon messages, payloads without georeferencing, bad
base64, and references that would make the server fetch what it should not (SSRF).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from corpus import expect_refusal

from geomlops.serving.inputs import InputPolicy, request_image
from geomlops.settings import Settings

POLICY = InputPolicy(s3_buckets=("imagery",), https_hosts=("cogs.example.org",),
                     max_bytes=4096, max_pixels=512 * 512)  # fmt: skip


def url(value: Any) -> dict[str, Any]:
    return {"jsonData": {"url": value}}


CASES: dict[str, tuple[Any, list[str]]] = {
    "body-list": ([{"binData": "SUkqAA=="}], ["JSON object"]),
    "body-string": ("II*", ["JSON object"]),
    "body-null": (None, ["JSON object"]),
    "ndarray-payload": ({"data": {"ndarray": [[1, 2], [3, 4]]}}, ["no image", "binData"]),
    "tensor-payload": ({"data": {"tensor": {"shape": [1], "values": [1]}}}, ["no image"]),
    "strdata-payload": ({"strData": "hello"}, ["no image"]),
    "jsondata-without-url": ({"jsonData": {"href": "s3://imagery/a.tif"}}, ["no image"]),
    "bindata-number": ({"binData": 12345}, ["binData", "base64"]),
    "bindata-list": ({"binData": ["SUkqAA=="]}, ["binData", "base64"]),
    "bindata-not-base64": ({"binData": "!!! not base64 !!!"}, ["binData", "not base64"]),
    "bindata-too-large": ({"binData": base64.b64encode(bytes(8192)).decode()}, ["binData", "4096"]),
    "url-number": (url(42), ["jsonData.url", "string"]),
    "url-file-passwd": (url("file:///etc/passwd"), ["file:///etc/passwd", "scheme"]),
    "url-local-path": (url("/etc/passwd"), ["/etc/passwd", "scheme"]),
    "url-loopback-http": (url("http://127.0.0.1:5000/admin"), ["127.0.0.1", "scheme"]),
    "url-loopback-https": (url("https://127.0.0.1:8443/x.tif"), ["127.0.0.1:8443", "host"]),
    "url-metadata-service": (url("https://169.254.169.254/latest/"), ["169.254.169.254"]),
    "url-allowed-host-lookalike": (url("https://cogs.example.org.evil.net/x.tif"), ["host"]),
    "url-credentials": (url("https://u:p@cogs.example.org/x.tif"), ["credentials"]),
    "url-other-bucket": (url("s3://mlflow/1/model.pt"), ["bucket 'mlflow'"]),
    "url-bucket-without-key": (url("s3://imagery/"), ["no object key"]),
    "url-gopher": (url("gopher://127.0.0.1:6379/_FLUSHALL"), ["gopher"]),
    "url-vsicurl": (url("/vsicurl/http://127.0.0.1/x.tif"), ["/vsicurl/"]),
    "url-empty": (url(""), ["scheme"]),
}
NAMES = sorted(CASES)


@pytest.mark.parametrize("case", NAMES)
def test_serving_refuses_request(case: str, request: pytest.FixtureRequest) -> None:
    body, fragments = CASES[case]
    settings = Settings()
    expect_refusal(request, lambda: request_image(body, POLICY, settings), fragments)
