"""How to feed a model version and read its answer, taken from its catalog (MLM) item.

Batch inference and serving load a model version they know only by its catalog item: the
package folder (``package.yaml``) is not at hand where they run. Everything needed to turn a
raster into model input and model output into a class mask is in ``mlm:input[0]`` and
``mlm:output[0]``: bands by name, z-score statistics, patch size, classes. This module reads
those fields once, checking them, so every consumer reads them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geomlops.errors import ValidationFailed


@dataclass(frozen=True)
class OutputClass:
    """One class of the model's mask."""

    value: int
    name: str


@dataclass(frozen=True)
class ModelIO:
    """The parts of an MLM item that say how to feed the model and read its answer."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    stddev: tuple[float, ...]
    patch_size: int
    classes: tuple[OutputClass, ...]
    nodata: float | None = None
    """A band value that means "no data" (``properties.bands[].nodata``), when recorded."""

    @property
    def class_names(self) -> list[str]:
        """Class names in channel order."""
        return [c.name for c in self.classes]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ModelIO:
        """Read and check ``mlm:input[0]`` and ``mlm:output[0]``; problems name the field."""
        props = item.get("properties", {})
        where = f"model item {item.get('id', '?')!r}"
        try:
            given = props["mlm:input"][0]
            output = props["mlm:output"][0]
            bands = tuple(b if isinstance(b, str) else str(b["name"]) for b in given["bands"])
            scaling = given["value_scaling"]
            shape = given["input"]["shape"]
            patch_size = int(shape[-1])
            classes = tuple(
                OutputClass(int(c["value"]), str(c["name"]))
                for c in output["classification:classes"]
            )
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValidationFailed(
                f"{where}: its MLM fields lack what inference needs ({error!r})",
                hint="mlm:input[0] needs bands, input.shape and value_scaling; mlm:output[0] "
                "needs classification:classes",
            ) from None
        if int(shape[-2]) != patch_size or patch_size <= 0:
            raise ValidationFailed(f"{where}: mlm:input[0].input.shape {shape} is not square")
        if len(scaling) != len(bands) or any(
            not isinstance(s, dict) or s.get("type") != "z-score" or not s.get("stddev")
            for s in scaling
        ):
            raise ValidationFailed(
                f"{where}: mlm:input[0].value_scaling must hold one z-score entry with a "
                f"non-zero stddev per band ({len(bands)})",
                hint="run `python -m geomlops.ml.scaling PACKAGE_DIR --write` and retrain",
            )
        nodata = {b.get("nodata") for b in props.get("bands", []) if isinstance(b, dict)}
        return cls(
            bands=bands,
            mean=tuple(float(s["mean"]) for s in scaling),
            stddev=tuple(float(s["stddev"]) for s in scaling),
            patch_size=patch_size,
            classes=classes,
            nodata=float(nodata.pop()) if len(nodata) == 1 and None not in nodata else None,
        )
