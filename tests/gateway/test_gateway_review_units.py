"""The review's small rules, without a stack: display bands, class pictures, whose credential."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from geomlops.gateway.errors import OgcError
from geomlops.gateway.reference import GREY, class_colours, display_bands, legend, mask_png
from geomlops.gateway.review import acting_as
from geomlops.gateway.tiles import class_colormap
from geomlops.ml.data import IGNORE
from geomlops.ml.raster import MASK_NODATA
from geomlops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MLM = json.loads((REPO / "model_packages" / "flood-water-s2" / "mlm.json").read_text())
S2 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def decoded(png: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as src:
            return src.read()


def test_display_bands_are_red_green_blue_by_the_sensor_profile() -> None:
    assert display_bands(S2) == ("B4", "B3", "B2")
    assert display_bands(("VV", "VH")) == ("VV",), "no colours: the first band, in grey"


def test_class_pictures_use_the_tiles_colours_and_grey_for_no_label() -> None:
    colours = class_colours(MLM)
    classes = [{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}]
    assert colours == class_colormap(MLM, classes)
    mask = np.array([[0, 1], [IGNORE, MASK_NODATA]])
    rgba = np.moveaxis(decoded(mask_png(mask, colours)), 0, -1)
    assert rgba[0, 0, 3] == 0, "background is clear, as on the map"
    assert tuple(rgba[0, 1]) == colours[1]
    assert tuple(rgba[1, 0]) == GREY, "no label is not 'not water'"
    assert rgba[1, 1, 3] == 0, "no data is clear"
    water = next(c for c in legend(MLM) if c["name"] == "water")
    assert water["color"] == "#{:02x}{:02x}{:02x}".format(*colours[1][:3])
    assert next(c for c in legend(MLM) if c["name"] == "not_water")["color"] is None


def test_a_decision_acts_as_the_callers_key_only() -> None:
    settings = Settings()
    mine = acting_as(settings, "gml_approver", "api-key")
    assert mine.auth.api_key == SecretStr("gml_approver")
    assert settings.auth.api_key != mine.auth.api_key, "the gateway's own settings unchanged"
    with pytest.raises(OgcError) as refused:
        acting_as(settings, "eyJ.a.token", "oidc")
    assert refused.value.status == 403 and "API key" in refused.value.detail
