"""Hostile model packages: each a copy of the registration corpus's valid base package with
one change, and each refused by ``geomlops package validate`` with its file and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corpus import expect_refusal
from registration_corpus import commit_all, make_repo, materialise

from geomlops.registration.validate import validate_or_raise


def edit_mlm(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(package: Path) -> None:
        file = package / "mlm.json"
        data = json.loads(file.read_text())
        change(data)
        file.write_text(json.dumps(data, indent=2))  # NaN and Infinity as Python writes them

    return apply


def replace_in(name: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(package: Path) -> None:
        file = package / name
        text = file.read_text()
        assert old in text
        file.write_text(text.replace(old, new, 1))

    return apply


def set_prop(key: str, value: Any) -> Callable[[Path], None]:
    return edit_mlm(lambda d: d["properties"].__setitem__(key, value))


def set_asset_href(href: str) -> Callable[[Path], None]:
    return edit_mlm(lambda d: d["assets"]["model"].__setitem__("href", href))


def shift_latitude(data: dict[str, Any]) -> None:
    data["geometry"]["coordinates"][0][2][1] = 200.0
    data["bbox"][3] = 200.0


GATES = "geomlops:gates"
CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "nan-literal": (
        replace_in("mlm.json", '"mlm:total_parameters": 6', '"mlm:total_parameters": NaN'),
        ["mlm.json", "line 69", "NaN"],
    ),
    "infinity-literal": (set_prop("mlm:batch_size_suggestion", float("inf")), ["Infinity"]),
    "mlm-json-9-mb": (set_prop("padding", "x" * 9 * 1024 * 1024), ["mlm.json", "bytes"]),
    "missing-imported-module": (
        replace_in("main.py", "from model import build_model", "from modell import build_model"),
        ["main.py", "line 5", "'modell'"],
    ),
    "missing-third-party-module": (
        replace_in("model.py", "from torch import nn", "from torch import nn\nimport tensorflux"),
        ["model.py", "line 4", "'tensorflux'"],
    ),
    "model-href-file-passwd": (
        set_asset_href("file:///etc/passwd"),
        ["mlm.json", "$.assets.model.href", "file:///etc/passwd"],
    ),
    "model-href-absolute-path": (set_asset_href("/etc/passwd"), ["$.assets.model.href"]),
    "model-href-ftp": (set_asset_href("ftp://10.0.0.1/model.pt"), ["'ftp'"]),
    "link-href-file": (
        edit_mlm(lambda d: d["links"].append({"rel": "via", "href": "file:///root/.ssh/id_rsa"})),
        ["$.links[0].href", "file:///root/.ssh/id_rsa"],
    ),
    "gates-empty": (set_prop(GATES, {}), ["mlm.json", GATES, "declares no gate"]),
    "gates-string": (set_prop(GATES, "val_iou_water >= 0.7"), [GATES, "not an object"]),
    "gates-list": (set_prop(GATES, [{"val_iou_water": 0.7}]), [GATES, "not an object"]),
    "gate-number": (set_prop(GATES, {"val_iou_water": 0.7}), ["val_iou_water", "min and/or max"]),
    "gate-empty-bounds": (set_prop(GATES, {"val_iou_water": {}}), ["min and/or max"]),
    "gate-string-min": (
        set_prop(GATES, {"val_iou_water": {"min": "0.7"}}),
        ["val_iou_water.min", "not a finite number"],
    ),
    "gate-bool-min": (set_prop(GATES, {"val_iou_water": {"min": True}}), ["not a finite number"]),
    "gate-unknown-key": (
        set_prop(GATES, {"val_iou_water": {"minimum": 0.7}}),
        ["min and/or max"],
    ),
    "latitude-200": (edit_mlm(shift_latitude), ["mlm.json", "$.bbox", "latitude [-90, 90]"]),
    "bbox-disagrees-with-geometry": (
        edit_mlm(lambda d: d.__setitem__("bbox", [10.0, 10.0, 11.0, 11.0])),
        ["mlm.json", "$.bbox", "does not enclose"],
    ),
    # output kinds (geomlops.model.kinds): an output the platform cannot post-process
    "output-kind-detection": (
        edit_mlm(
            lambda d: d["properties"]["mlm:output"][0].__setitem__("tasks", ["object-detection"])
        ),
        [
            "mlm.json",
            "mlm:output[0].tasks",
            "class-mask",
            "probability",
            "continuous",
            "chip-class",
        ],
    ),
    "output-kind-integer-scores": (
        edit_mlm(
            lambda d: d["properties"]["mlm:output"][0]["result"].__setitem__("data_type", "int16")
        ),
        ["mlm.json", "mlm:output[0].result.data_type", "scores must be float", "chip-class"],
    ),
    "output-kind-one-channel-two-classes": (
        edit_mlm(
            lambda d: d["properties"]["mlm:output"][0]["result"].__setitem__(
                "shape", [-1, 1, 64, 64]
            )
        ),
        ["mlm:output[0].classification:classes", "exactly one class", "probability"],
    ),
    "output-kind-no-height": (
        edit_mlm(
            lambda d: d["properties"]["mlm:output"][0]["result"].update(
                shape=[-1, 2], dim_order=["batch", "class"]
            )
        ),
        ["mlm:output[0].result.dim_order", "no height and width", "class-mask"],
    ),
    "output-threshold-on-class-mask": (
        edit_mlm(lambda d: d["properties"]["mlm:output"][0].__setitem__("geomlops:threshold", 0.5)),
        ["mlm:output[0].geomlops:threshold", "only a probability or continuous output"],
    ),
}
NAMES = sorted(CASES)


@pytest.mark.parametrize("case", NAMES)
def test_package_validate_refuses(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    change, fragments = CASES[case]
    package = materialise(None, make_repo(tmp_path / "repo"))
    commit_all(package.parents[1], "valid base")
    change(package)
    commit_all(package.parents[1], case)
    expect_refusal(request, lambda: validate_or_raise(package), fragments)


def test_base_package_is_valid(tmp_path: Path) -> None:
    """The cases' base passes, so each refusal above is its one change's doing."""
    package = materialise(None, make_repo(tmp_path / "repo"))
    commit_all(package.parents[1], "valid base")
    validate_or_raise(package)
