"""Reading a model version's training record and comparing a retraining with it."""

from __future__ import annotations

import math

import pytest

from geomlops.errors import ValidationFailed
from geomlops.governance.reproduce_training import (
    RecordedTraining,
    compare_metrics,
    parse_version_ref,
    reproduction,
)


def _item(**props: object) -> dict:
    base = {
        "geomlops:package": "flood-water-s2",
        "geomlops:package_version": "0.1.0",
        "geomlops:git_commit": "a" * 40,
        "geomlops:dataset": "sen1floods11",
        "geomlops:dataset_version": "v2",
        "geomlops:dataset_md5": "f" * 32,
        "geomlops:mlflow_run_id": "r1",
        "geomlops:metrics": {"val_iou_water": 0.8, "val_accuracy": 0.9, "train_loss": 0.3},
        "mlm:hyperparameters": {"epochs": 12, "learning_rate": 0.001, "seed": 0, "loss": "ce"},
    }
    return {
        "id": "flood-water-s2-mv3",
        "properties": {**base, **props},
        "assets": {"code": {"href": "file:///repo/model_packages/x", "roles": ["mlm:source_code"]}},
    }


@pytest.mark.parametrize(
    "ref",
    ["flood-water-s2/3", "flood-water-s2@3", "models:/flood-water-s2/3", "flood-water-s2-mv3"],
)
def test_version_refs(ref: str) -> None:
    assert parse_version_ref(ref) == ("flood-water-s2", "3")


@pytest.mark.parametrize("ref", ["flood-water-s2", "flood-water-s2/latest", ""])
def test_bad_version_refs_say_what_is_accepted(ref: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_version_ref(ref)
    assert "NAME/VERSION" in (raised.value.hint or "")


def test_recorded_params_are_the_runs_over_the_items() -> None:
    recorded = RecordedTraining.from_record(
        _item(), {"epochs": "1", "seed": "7", "data": "s3://x", "device": "cpu"}
    )
    # MLflow's record of the run wins; what the item alone holds fills in; no data/device.
    assert recorded.train_parameters({"epochs", "learning_rate", "seed", "data", "device"}) == {
        "epochs": "1",
        "learning_rate": "0.001",
        "seed": "7",
    }
    assert recorded.dataset_version == 2
    assert recorded.metrics == {"val_iou_water": 0.8, "val_accuracy": 0.9}  # held-out only


def test_a_record_without_its_inputs_cannot_be_reproduced() -> None:
    with pytest.raises(ValidationFailed) as raised:
        RecordedTraining.from_record(_item(**{"geomlops:git_commit": None}), {})
    assert raised.value.problems == ["properties.geomlops:git_commit is missing"]


def test_each_metric_passes_or_fails_on_its_own() -> None:
    recorded = RecordedTraining.from_record(_item(), {})
    found = reproduction(recorded, {"val_iou_water": 0.79, "val_accuracy": 0.85}, 0.02)
    by_name = {c.name: c for c in found.comparisons}
    assert by_name["val_iou_water"].ok
    assert math.isclose(by_name["val_accuracy"].difference or 0, 0.05)
    assert not by_name["val_accuracy"].ok
    assert not found.ok
    assert reproduction(recorded, {"val_iou_water": 0.8, "val_accuracy": 0.9}, 0.0).ok


def test_a_metric_not_reproduced_fails() -> None:
    (comparison,) = compare_metrics({"val_iou_water": 0.8}, {}, 0.5)
    assert comparison.reproduced is None and not comparison.ok


def test_nothing_to_compare_is_not_a_success() -> None:
    recorded = RecordedTraining.from_record(_item(**{"geomlops:metrics": {}}), {})
    found = reproduction(recorded, {"val_iou_water": 0.8})
    assert not found.ok and found.warnings


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        compare_metrics({"val_iou_water": 0.8}, {"val_iou_water": 0.8}, -0.1)
