"""geomlops.model.kinds: the kind of each MLM output, and the refusal of one without a kind."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from geomlops.errors import ValidationFailed
from geomlops.model import OutputKind, output_kind, read_output
from geomlops.model import properties as prop
from geomlops.model.io import ModelIO
from geomlops.model.kinds import output_problems

REPO = Path(__file__).resolve().parents[2]
FLOOD = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
KIND_NAMES = ("class-mask", "probability", "continuous", "chip-class")

CLOUD = {  # the contract's cloud-s2 output
    "name": "cloud-probability",
    "tasks": ["semantic-segmentation"],
    "result": {
        "shape": [-1, 1, 512, 512],
        "dim_order": ["batch", "channel", "height", "width"],
        "data_type": "float32",
    },
    "classification:classes": [{"value": 1, "name": "cloud"}],
    "geomlops:threshold": 0.4,
}
BIOMASS = {
    "name": "biomass",
    "tasks": ["regression"],
    "result": {
        "shape": [-1, 256, 256],
        "dim_order": ["batch", "height", "width"],
        "data_type": "float32",
    },
    "geomlops:unit": "Mg/ha",
    "geomlops:colormap": "YlGn",
}
CHIPS = {
    "name": "land-cover",
    "tasks": ["scene-classification"],
    "result": {"shape": [-1, 3], "dim_order": ["batch", "class"], "data_type": "float32"},
    "classification:classes": [
        {"value": 0, "name": "forest"},
        {"value": 1, "name": "crop"},
        {"value": 2, "name": "urban"},
    ],
}
INT_MASK = {
    "name": "mask",
    "tasks": ["semantic-segmentation"],
    "result": {
        "shape": [-1, 64, 64],
        "dim_order": ["batch", "height", "width"],
        "data_type": "uint8",
    },
    "classification:classes": [{"value": 0, "name": "land"}, {"value": 1, "name": "water"}],
}


def _changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if key == "result" and value is not None:
            out["result"].update(value)
        elif value is None:
            out.pop(key.replace("__", ":"), None)
        else:
            out[key.replace("__", ":")] = value
    return out


@pytest.mark.parametrize(
    ("output", "kind"),
    [
        (FLOOD["properties"]["mlm:output"][0], OutputKind.CLASS_MASK),
        (CLOUD, OutputKind.PROBABILITY),
        (
            _changed(
                CLOUD, result={"shape": [-1, 512, 512], "dim_order": ["batch", "height", "width"]}
            ),
            OutputKind.PROBABILITY,
        ),
        (BIOMASS, OutputKind.CONTINUOUS),
        (CHIPS, OutputKind.CHIP_CLASS),
        (INT_MASK, OutputKind.CLASS_MASK),
    ],
)
def test_each_output_has_its_kind(output: dict[str, Any], kind: OutputKind) -> None:
    assert output_kind(output) is kind
    assert output_problems([output]) == []


def test_the_reader_gives_what_post_processing_needs() -> None:
    cloud = read_output(CLOUD)
    assert (cloud.kind, cloud.threshold, cloud.colormap, cloud.unit) == (
        OutputKind.PROBABILITY, 0.4, "viridis", None
    )  # fmt: skip
    assert cloud.threshold_class == (1, "cloud") and cloud.class_names == ["cloud"]
    biomass = read_output(BIOMASS)
    assert (biomass.threshold, biomass.colormap, biomass.unit) == (None, "YlGn", "Mg/ha")
    assert biomass.threshold_class == (1, "above-threshold")
    assert read_output(CHIPS).class_names == ["forest", "crop", "urban"]
    assert prop.THRESHOLD == "geomlops:threshold" and prop.COLORMAP == "geomlops:colormap"


def test_model_io_exposes_the_kind_of_its_output() -> None:
    assert ModelIO.from_item(FLOOD).kind is OutputKind.CLASS_MASK
    item = copy.deepcopy(FLOOD)
    item["properties"]["mlm:output"] = [CLOUD]
    io = ModelIO.from_item(item)
    assert io.kind is OutputKind.PROBABILITY and io.output_spec.threshold == 0.4
    assert io.class_names == ["cloud"]
    item["properties"]["mlm:output"] = [BIOMASS]  # no classes at all
    assert ModelIO.from_item(item).classes == ()
    item["properties"]["mlm:output"] = [_changed(BIOMASS, tasks=["detection"])]
    with pytest.raises(
        ValidationFailed, match=r"model item 'flood-water-s2': mlm:output\[0\]\.tasks"
    ):
        ModelIO.from_item(item)


BAD = {
    "unknown-task": (_changed(CLOUD, tasks=["object-detection"]), "mlm:output[0].tasks"),
    "string-result": (
        _changed(CLOUD, result={"data_type": "string"}),
        "mlm:output[0].result.data_type",
    ),
    "no-result": (_changed(CLOUD, result=None), "mlm:output[0].result"),
    "probability-of-two-classes": (
        _changed(CLOUD, **{"classification__classes": INT_MASK["classification:classes"]}),
        "mlm:output[0].classification:classes",
    ),
    "probability-without-class": (
        _changed(CLOUD, **{"classification__classes": None}),
        "mlm:output[0].classification:classes",
    ),
    "scores-for-three-of-two-classes": (
        _changed(FLOOD["properties"]["mlm:output"][0], result={"shape": [-1, 3, 64, 64]}),
        "mlm:output[0].classification:classes",
    ),
    "segmentation-without-height": (
        _changed(CLOUD, result={"shape": [-1, 1], "dim_order": ["batch", "channel"]}),
        "mlm:output[0].result.dim_order",
    ),
    "integer-regression": (
        _changed(BIOMASS, result={"data_type": "int16"}),
        "mlm:output[0].result.data_type",
    ),
    "regression-with-classes": (
        _changed(BIOMASS, **{"classification__classes": [{"value": 1, "name": "x"}]}),
        "mlm:output[0].classification:classes",
    ),
    "chips-without-classes": (
        _changed(CHIPS, **{"classification__classes": None}),
        "mlm:output[0].classification:classes",
    ),
    "threshold-above-one": (
        _changed(CLOUD, geomlops__threshold=1.5),
        "mlm:output[0].geomlops:threshold",
    ),
    "threshold-text": (
        _changed(CLOUD, geomlops__threshold="0.4"),
        "mlm:output[0].geomlops:threshold",
    ),
    "threshold-on-a-class-mask": (
        _changed(INT_MASK, geomlops__threshold=0.5),
        "mlm:output[0].geomlops:threshold",
    ),
    "colormap-not-a-name": (
        _changed(CLOUD, geomlops__colormap="red; drop"),
        "mlm:output[0].geomlops:colormap",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_output_without_a_kind_is_refused_naming_the_field_and_the_kinds(case: str) -> None:
    output, field = BAD[case]
    with pytest.raises(ValidationFailed) as error:
        output_kind(output)
    assert error.value.message.startswith(f"{field}: ")
    assert all(name in (error.value.hint or "") for name in KIND_NAMES)
    assert next(f for f, _ in output_problems([output])) == field


def test_every_output_of_a_list_is_checked() -> None:
    found = output_problems([CLOUD, _changed(CHIPS, tasks=["generative"])])
    assert found == [("mlm:output[1].tasks", "['generative'] names no task the platform runs")]
    assert output_problems([]) == [("mlm:output", "must list at least one output")]
