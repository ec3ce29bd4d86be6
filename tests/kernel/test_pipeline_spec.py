"""Pipeline specs (geomlops.model.pipeline): what is accepted, and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geomlops.errors import ValidationFailed
from geomlops.model.pipeline import MaskRule, MaskSpec, load_pipeline, mask_rule

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "model_packages" / "flood-water-s2" / "pipelines" / "clear-sky.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _cloud_item(**output: object) -> dict:
    """A mask model's item as the contract for cloud-s2 describes it."""
    entry = {
        "name": "cloud-probability",
        "tasks": ["semantic-segmentation"],
        "result": {
            "shape": [-1, 1, 256, 256],
            "dim_order": ["batch", "channel", "height", "width"],
            "data_type": "float32",
        },
        "classification:classes": [{"value": 1, "name": "cloud"}],
        "geomlops:threshold": 0.4,
        **output,
    }
    return {"id": "cloud-s2-mv1", "properties": {"mlm:output": [entry]}}


def test_the_shipped_example_is_valid() -> None:
    spec = load_pipeline(EXAMPLE)
    assert (spec.model, spec.version) == ("flood-water-s2", None)
    assert (spec.mask.model, spec.mask.output, spec.mask.drop) == (
        "cloud-s2",
        "cloud-probability",
        "above",
    )


def test_versions_read_as_text(tmp_path: Path) -> None:
    spec = load_pipeline(
        _write(tmp_path, "pipeline: p\nmodel: a\nversion: 3\nmask: {model: b, version: 12}\n")
    )
    assert (spec.version, spec.mask.version) == ("3", "12")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("pipeline: p\nmodel: a\n", "mask: Field required"),
        ("pipeline: p\nmodel: a\nmask: {model: b, drop: sideways}\n", "mask.drop"),
        ("pipeline: p\nmodel: a\nmask: {model: b, treshold: 0.4}\n", "mask.treshold"),
        ("pipeline: Not_A_Label\nmodel: a\nmask: {model: b}\n", "pipeline"),
        ("pipeline: p\nmodel: a\nmask: {model: a}\n", "mask: Value error, the mask model"),
        ("pipeline: p\nmodel: a\nmask: {model: b, threshold: high}\n", "mask.threshold"),
        ("- just\n- a list\n", "a pipeline spec is a mapping"),
    ],
)
def test_a_bad_spec_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValidationFailed) as caught:
        load_pipeline(path)
    said = " ".join([caught.value.message, *caught.value.problems])
    assert str(path) in said
    assert field in said, said


def test_not_yaml_is_refused_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="not YAML"):
        load_pipeline(_write(tmp_path, "pipeline: [unclosed\n"))


def test_the_rule_takes_the_declared_threshold_unless_given() -> None:
    rule = mask_rule(MaskSpec(model="cloud-s2"), _cloud_item())
    assert rule == MaskRule("cloud-probability", 0, 0.4, "above")
    given = mask_rule(MaskSpec(model="cloud-s2", threshold=0.7, drop="below"), _cloud_item())
    assert (given.threshold, given.drop) == (0.7, "below")
    values = np.array([[[0.1, 0.4, 0.9, np.nan]]], dtype="float32")
    assert rule.masked(values).tolist() == [[False, True, True, True]]  # NaN: not known clear
    assert given.masked(values).tolist() == [[True, True, False, True]]


@pytest.mark.parametrize(
    ("spec", "item", "field"),
    [
        (MaskSpec(model="c", output="clouds"), _cloud_item(), "mask.output"),
        (MaskSpec(model="c"), _cloud_item(**{"geomlops:threshold": None}), "mask.threshold"),
        (
            MaskSpec(model="c", threshold=0.5),
            _cloud_item(
                result={
                    "shape": [-1, 2, 64, 64],
                    "dim_order": ["batch", "class", "height", "width"],
                }
            ),
            "mask.output",
        ),
    ],
)
def test_a_rule_the_mask_model_cannot_give_names_the_field(
    spec: MaskSpec, item: dict, field: str
) -> None:
    with pytest.raises(ValidationFailed, match=field):
        mask_rule(spec, item)
