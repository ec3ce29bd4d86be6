"""Hostile GeoTIFFs, through both doors that take rasters from outside.

- serving: the bytes of a request (``binData``), read by :func:`read_image` exactly as the
  model component reads them;
- ``imagery add``: every check :func:`ingest_scene` makes before anything is uploaded (the
  header, then the COG conversion). The stack module checks the CLI leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_rasters import CASES
from corpus import expect_refusal

from geomlops.catalog.imagery import read_facts
from geomlops.catalog.ingest import to_cog
from geomlops.serving.inputs import InputPolicy, InputRejected, RequestImage, read_image
from geomlops.settings import Settings

NAMES = sorted(CASES)


@pytest.mark.parametrize("case", NAMES)
def test_serving_refuses_geotiff(case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    make, fragments = CASES[case]
    data = make(tmp_path).read_bytes()
    policy = InputPolicy.from_settings(Settings())
    image = RequestImage(data, f"binData ({case})")
    expect_refusal(
        request,
        lambda: read_image(image, ["B1"], policy),
        [f"binData ({case})"] + [f for f in fragments if f not in ("decodes to", "truncated")],
    )


# A 4096 x 4096 x 13 scene (436 MB decoded) is an ordinary scene for `imagery add`, whose
# limit is sized for whole Sentinel-2 tiles; the header of 100000 x 100000 is not.
@pytest.mark.parametrize("case", [n for n in NAMES if n != "bomb-4096x4096x13"])
def test_imagery_add_refuses_geotiff(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    make, fragments = CASES[case]
    path = make(tmp_path)

    def checks_before_upload() -> None:
        read_facts(path)
        to_cog(path, tmp_path / "out" / "cog.tif")

    (tmp_path / "out").mkdir()
    expect_refusal(request, checks_before_upload, [path.name, *fragments])
    assert not (tmp_path / "out" / "cog.tif").exists() or case == "truncated"


def test_decoded_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 13-band file passes when the limit allows it: bands count, and the limit is settable."""
    make, _ = CASES["bomb-4096x4096x13"]
    path = make(tmp_path)
    monkeypatch.setenv("GEOMLOPS_SERVING_MAX_DECODED_BYTES", str(4096 * 4096 * 13 * 2))
    policy = InputPolicy.from_settings(Settings())
    raster = read_image(RequestImage(path.read_bytes(), "binData"), ["B1"], policy)
    assert raster.shape == (4096, 4096)
    monkeypatch.setenv("GEOMLOPS_SERVING_MAX_DECODED_BYTES", str(4096 * 4096 * 13 * 2 - 1))
    smaller = InputPolicy.from_settings(Settings())
    with pytest.raises(InputRejected, match="13 band"):
        read_image(RequestImage(path.read_bytes(), "binData"), ["B1"], smaller)
