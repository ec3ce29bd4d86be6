"""Imagery items whose asset href points where the planner must not read (SSRF, local files).

Each item is handed to :func:`scene_pin`, the planner's one reader of scene hrefs, with a
real HTTP server listening on loopback: the refusal must name the item and the href, and
the server must not have been asked anything. A local file that exists is refused too.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bad_rasters import write
from corpus import expect_refusal
from shapely.geometry import Polygon, box

from geomlops.settings import Settings
from geomlops.workflows.inference.aoi import for_item
from geomlops.workflows.inference.config import ClassPin, ModelPin
from geomlops.workflows.inference.hrefs import href_problem
from geomlops.workflows.inference.planner import scene_pin

MODEL = ModelPin(
    name="m", version="1", item_id="m-1", model_uri="models:/m/1", stage="production",
    image="img", bands=["B1"], mean=[0.0], stddev=[1.0], patch_size=32,
    classes=[ClassPin(value=0, name="dry"), ClassPin(value=1, name="water")],
)  # fmt: skip


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def loopback() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def local_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("scene") / "secret.tif")


def item(href: Any) -> dict[str, Any]:
    return {
        "id": "t-evil-scene",
        "properties": {"datetime": "2019-09-18T10:50:00Z"},
        "assets": {"image": {"href": href, "roles": ["data"], "type": "image/tiff"}},
    }


CASES: dict[str, tuple[str, list[str]]] = {
    "loopback-http": ("http://{loopback}/scene.tif", ["not an allowed source"]),
    "loopback-https": ("https://{loopback}/scene.tif", ["not an allowed source"]),
    "vsicurl-loopback": ("/vsicurl/http://{loopback}/scene.tif", ["virtual-file"]),
    "local-path": ("{local}", ["local files"]),
    "file-url": ("file://{local}", ["local files"]),
    "relative-path": ("scene.tif", ["local files"]),
    "vsis3-other-bucket": ("/vsis3/mlflow/1/model.tif", ["virtual-file"]),
    "other-bucket": ("s3://mlflow/1/artifacts/scene.tif", ["not the imagery bucket"]),
    "bucket-without-key": ("s3://imagery/", ["not the imagery bucket"]),
    "credentials": ("https://user:pw@{loopback}/scene.tif", ["credentials"]),
    "dot-dot": ("s3://imagery/../mlflow/x.tif", ["'..'"]),
    "metadata-service": ("http://169.254.169.254/latest/meta-data/", ["not an allowed source"]),
    "allow-list-lookalike": ("https://cogs.example.org.evil.net/x.tif", ["not an allowed"]),
    "allow-list-sibling-path": ("https://cogs.example.org/scenesX/x.tif", ["not an allowed"]),
    "no-href": ("", ["no href"]),
}
SETTINGS = Settings.model_validate(
    {"inference": {"allowed_asset_hrefs": ["https://cogs.example.org/scenes"]}}
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_planner_refuses_href(
    case: str, loopback: str, local_scene: Path, request: pytest.FixtureRequest
) -> None:
    template, fragments = CASES[case]
    href = template.format(loopback=loopback, local=local_scene)
    before = len(_Recorder.seen)
    expect_refusal(
        request, lambda: scene_pin(item(href), MODEL, None, SETTINGS), ["t-evil-scene", *fragments]
    )
    assert len(_Recorder.seen) == before, "the planner sent a request to the loopback service"


def test_imagery_bucket_and_allow_list_are_read() -> None:
    assert href_problem("s3://imagery/Spain/Spain.tif", SETTINGS) is None
    assert href_problem("https://cogs.example.org/scenes/a/b.tif", SETTINGS) is None
    assert href_problem("https://cogs.example.org/scenes?x=1", SETTINGS) is None


def test_item_geometry_is_simplified_to_its_vertex_budget() -> None:
    """A 200,000-vertex area is stored with at most the budget, covering nearly the same."""
    angles = np.linspace(0, 2 * np.pi, 200_001)[:-1]
    circle = Polygon(np.column_stack([np.cos(angles), np.sin(angles)]))
    stored = for_item(circle, 1_000)
    assert len(circle.exterior.coords) > 200_000
    assert len(stored.exterior.coords) <= 1_000
    assert stored.symmetric_difference(circle).area < 0.001 * circle.area
    assert for_item(box(0, 0, 1, 1), 1_000).equals(box(0, 0, 1, 1))
