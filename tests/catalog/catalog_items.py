"""Small MLM model items for catalog tests, built the way the platform builds them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pystac
from stac_model.input import InputStructure, ModelInput
from stac_model.output import MLMClassification, ModelOutput, ModelResult
from stac_model.schema import MLModelProperties

from geomlops.catalog.mlm import build_model_item

S2_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
S1_BANDS = ["VV", "VH"]


def model_item(
    item_id: str,
    *,
    tasks: tuple[str, ...] = ("semantic-segmentation",),
    framework: str = "pytorch",
    bands: list[str] | None = None,
    bbox: tuple[float, float, float, float] = (-10.0, 35.0, 5.0, 44.0),
    start: datetime = datetime(2019, 1, 1, tzinfo=UTC),
    end: datetime = datetime(2019, 12, 31, tzinfo=UTC),
    accelerator: str = "cuda",
) -> pystac.Item:
    """A flood-segmentation-like model version item (a chip classifier for classification)."""
    bands = bands or S2_BANDS
    model_input = ModelInput(
        name="chips",
        bands=bands,
        input=InputStructure(
            shape=[-1, len(bands), 64, 64],
            dim_order=["batch", "bands", "height", "width"],
            data_type="float32",
        ),
    )
    # A classification-only model labels whole chips: its result has no height and width
    # (the platform refuses a per-pixel "classification", which is segmentation).
    per_pixel = "classification" not in tasks or "semantic-segmentation" in tasks
    output = ModelOutput(
        name="mask" if per_pixel else "label",
        tasks=set(tasks),
        result=ModelResult(
            shape=[-1, 2, 64, 64] if per_pixel else [-1, 2],
            dim_order=["batch", "channel", "height", "width"] if per_pixel else ["batch", "class"],
            data_type="float32",
        ),
        classes=[MLMClassification(value=0, name="dry"), MLMClassification(value=1, name="water")],
    )
    props = MLModelProperties(
        name=f"{item_id} model",
        architecture="UNet",
        tasks=set(tasks),
        framework=framework,
        framework_version="2.13.0",
        accelerator=accelerator,
        input=[model_input],
        output=[output],
    )
    weights = pystac.Asset(
        href=f"s3://mlflow/{item_id}/model.pt",
        media_type="application/octet-stream; application=pytorch",
        roles=["mlm:model", "mlm:weights", "data"],
        extra_fields={"mlm:artifact_type": "torch.save"},
    )
    return build_model_item(
        item_id, props, assets={"model": weights}, bbox=bbox, start=start, end=end, version="1.0.0"
    )


def model_dict(item_id: str, **kw: Any) -> dict[str, Any]:
    """The same, as JSON data."""
    return model_item(item_id, **kw).to_dict(include_self_link=False, transform_hrefs=False)
