"""The reference scene of a model version, and real predictions of it, for the review page.

An approver judges a candidate by its metrics and by looking at what it predicts. What it
is looked at on must be what it was measured on: the scene its package declares
(``package.yaml`` ``dataset.image``/``dataset.label``) from the very dataset version the
version records (``geomlops:dataset``/``dataset_version``, checked against its DVC
checksum). Nothing here is a second copy of a rule: the package folder is found as the
train steps find it, the dataset fetched by :func:`~geomlops.datasets.materialise`, the
scene read by :func:`~geomlops.ml.data.load_scene`, the model loaded as batch inference
loads it and run through the same sliding window
(:func:`~geomlops.ml.tiling.predict_probabilities`) with its MLM scaling
(:class:`~geomlops.model.ModelIO`). Class colours are the tiles' (:func:`class_colormap`).

Scenes are kept per dataset version, predictions per (model, version, dataset version):
a model version's weights never change, so a second view is instant.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rio_tiler.utils import render

from geomlops.catalog.sensors import recognise
from geomlops.datasets.materialise import materialise
from geomlops.datasets.refs import DatasetRef
from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.gateway.tiles import class_colormap
from geomlops.ml.data import IGNORE, load_scene
from geomlops.ml.raster import MASK_NODATA
from geomlops.ml.scaling import normalise
from geomlops.ml.spec import load_package
from geomlops.ml.split import spatial_split
from geomlops.ml.tiling import predict_probabilities
from geomlops.model import ModelIO
from geomlops.model import properties as prop
from geomlops.model.ids import parse_model_item_id
from geomlops.model.kinds import OutputKind
from geomlops.model.runtimes import artifact_type, model_folder
from geomlops.package_source import PackageSource
from geomlops.settings import Settings
from geomlops.transformers.postprocess import threshold_mask, to_raster
from geomlops.workflows.inference.steps import load_registered_model
from geomlops.workflows.steps.train import find_package_dir

OVERLAP = 16
"""Tile overlap of the sliding window: evaluation's default (``geomlops.ml.runner``)."""
STRETCH = (2.0, 98.0)
"""Percentiles a band is stretched between for display (robust to a few bright pixels)."""
GREY = (128, 128, 128, 255)
"""Label pixels without a usable label (no data, or no image under them)."""


@dataclass(frozen=True)
class ReferenceScene:
    """The scene a model version is reviewed on: image, hand label, held-out block."""

    dataset: str
    dataset_version: str
    dataset_md5: str | None
    image_path: str
    """The image's path inside the dataset version (``package.yaml`` ``dataset.image``)."""
    label_path: str
    bands: tuple[str, ...]
    """Band names of ``image``, in its order (the package's declared input bands)."""
    image: np.ndarray
    """Bands x height x width, float32, NaN where there is no data."""
    label: np.ndarray
    """Height x width class values, ``IGNORE`` (-1) where unusable."""
    holdout: tuple[int, int]
    """Columns [start, stop) of the held-out block evaluation measured the gates on."""

    @property
    def tag(self) -> str:
        return f"{self.dataset}@{self.dataset_version}"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])

    def describe(self) -> dict[str, Any]:
        height, width = self.shape
        return {
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "dataset_md5": self.dataset_md5,
            "image": self.image_path,
            "label": self.label_path,
            "width": width,
            "height": height,
            "holdout_columns": list(self.holdout),
            "display_bands": list(display_bands(self.bands)),
        }


def display_bands(bands: tuple[str, ...]) -> tuple[str, ...]:
    """Red, green and blue when the sensor profile names them; else the first band (grey)."""
    profile = recognise(bands)
    if profile is not None:
        common = {b.common_name: b.name for b in profile.bands}
        if all(c in common for c in ("red", "green", "blue")):
            return common["red"], common["green"], common["blue"]
    return (bands[0],)


class ReviewCache:
    """Reference scenes by dataset version and prediction masks by model version.

    One lock per key: two pages opening the same version wait for one prediction, not two.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._scenes: dict[str, ReferenceScene] = {}
        self._masks: dict[tuple[str, ...], np.ndarray] = {}
        self._pngs: dict[tuple[str, ...], bytes] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: tuple[str, ...]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _data_folder(self, tag: str) -> Path:
        with self._guard:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="geomlops-review-")
            return Path(self._folder.name) / tag.replace("@", "-")

    # --- the scene ------------------------------------------------------------------------
    def scene(self, item: dict[str, Any]) -> ReferenceScene:
        """The reference scene of model version ``item`` (its training dataset version)."""
        props = item.get("properties") or {}
        name, number = props.get(prop.DATASET), str(props.get(prop.DATASET_VERSION) or "")
        if not name or not number.startswith("v") or not number[1:].isdigit():
            raise NotFoundError(
                f"model version {item.get('id')} records no dataset version "
                f"({prop.DATASET}={name!r}, {prop.DATASET_VERSION}={number or None!r}), so "
                "there is no reference scene to show",
                hint="versions trained by `geomlops-train` record theirs",
            )
        ref = DatasetRef(str(name), int(number[1:]))
        with self._lock(("scene", ref.tag)):
            if ref.tag not in self._scenes:
                self._scenes[ref.tag] = self._load_scene(props, ref)
            return self._scenes[ref.tag]

    def _load_scene(self, props: dict[str, Any], ref: DatasetRef) -> ReferenceScene:
        source = (
            PackageSource(
                str(props[prop.GIT_URL]),
                str(props.get(prop.GIT_COMMIT)),
                str(props.get(prop.PACKAGE_PATH) or ""),
            )
            if props.get(prop.GIT_URL)
            else None
        )
        package = load_package(
            find_package_dir(
                str(props.get(prop.PACKAGE)),
                str(props.get(prop.PACKAGE_VERSION)),
                str(props.get(prop.IMAGE)),
                source,
                self.settings,
            ),
            require_scaling=False,
        )
        folder = self._data_folder(ref.tag)
        if not folder.exists():
            materialise(
                ref, folder, settings=self.settings, expected_md5=props.get(prop.DATASET_MD5)
            )
        scene = load_scene(package, str(folder))
        spec = package.spec
        split = spatial_split(scene.image.shape[1], spec.dataset.holdout, spec.input.patch_size)
        return ReferenceScene(
            dataset=ref.name,
            dataset_version=f"v{ref.number}",
            dataset_md5=props.get(prop.DATASET_MD5),
            image_path=spec.dataset.image,
            label_path=spec.dataset.label,
            bands=tuple(spec.input.bands),
            image=scene.image.data,
            label=scene.label,
            holdout=(split.holdout.start, split.holdout.stop),
        )

    # --- predictions ----------------------------------------------------------------------
    def mask(self, item: dict[str, Any], scene: ReferenceScene) -> np.ndarray:
        """The class mask (uint8, ``MASK_NODATA`` where no data) model version ``item`` predicts."""
        key = ("mask", item["id"], scene.tag)
        with self._lock(key):
            if key not in self._masks:
                self._masks[key] = predict_mask(item, ModelIO.from_item(item), scene, self.settings)
            return self._masks[key]

    def png(self, key: tuple[str, ...], render: Any) -> bytes:
        """``render()`` as PNG bytes, made once per key."""
        with self._lock(("png", *key)):
            if key not in self._pngs:
                self._pngs[key] = render()
            return self._pngs[key]


def predict_mask(
    item: dict[str, Any], model_io: ModelIO, scene: ReferenceScene, settings: Settings
) -> np.ndarray:
    """What model version ``item`` predicts over the scene, as batch inference predicts a tile.

    The scene's bands are put in the model's order by name; no-data pixels are 0 after
    scaling (as batch inference feeds them) and get ``MASK_NODATA`` in the mask.
    """
    name, _ = parse_model_item_id(item["id"])
    model_uri = item["id"]
    missing_bands = [b for b in model_io.bands if b not in scene.bands]
    if missing_bands:
        raise ValidationFailed(
            f"the reference scene lacks band(s) {', '.join(missing_bands)} that {model_uri} reads",
            problems=[f"scene bands: {list(scene.bands)}", f"model bands: {list(model_io.bands)}"],
        )
    bands = scene.image[[scene.bands.index(b) for b in model_io.bands]]
    missing = np.isnan(bands).any(axis=0)
    scaled = normalise(bands, model_io.mean, model_io.stddev)
    scaled[:, missing] = 0.0
    spec = model_io.output_spec
    if spec.kind is not OutputKind.CLASS_MASK and spec.threshold is None:
        raise ValidationFailed(
            f"{model_uri} answers a {spec.kind.value} without a threshold: it has no class "
            "mask to compare with a label",
            hint="declare geomlops:threshold on its mlm:output to compare its threshold mask",
        )
    model, device = load_registered_model(
        name, model_folder(item), artifact_type(item), "auto", settings
    )
    try:
        probabilities = predict_probabilities(
            model, scaled, patch_size=model_io.patch_size, overlap=OVERLAP, device=device,
            softmax=spec.kind is OutputKind.CLASS_MASK,
        )  # fmt: skip
    finally:
        model.close()
    raster = to_raster(spec.kind, probabilities)
    if spec.kind is OutputKind.CLASS_MASK:
        mask = raster
    else:  # the threshold mask, as batch inference's polygons are drawn
        assert spec.threshold is not None  # noqa: S101 - checked above, for the type checker
        mask = threshold_mask(raster, spec.threshold, spec.threshold_class[0])
    mask[missing] = MASK_NODATA
    return mask


# --- pictures --------------------------------------------------------------------------
def _png(rgba: np.ndarray) -> bytes:
    """Height x width x 4 (RGBA, uint8) as PNG."""
    return bytes(render(np.moveaxis(rgba[..., :3], -1, 0), mask=rgba[..., 3], img_format="PNG"))


def image_png(scene: ReferenceScene) -> bytes:
    """The scene's display bands, each stretched between its 2nd and 98th percentile."""
    shown = display_bands(scene.bands)
    data = scene.image[[scene.bands.index(b) for b in shown]]
    height, width = scene.shape
    rgba = np.zeros((height, width, 4), dtype="uint8")
    missing = np.isnan(data).any(axis=0)
    for channel, band in enumerate(data if len(shown) == 3 else [data[0]] * 3):
        valid = band[~missing]
        low, high = np.percentile(valid, STRETCH) if valid.size else (0.0, 1.0)
        scaled = np.clip((band - low) / max(float(high - low), 1e-6), 0.0, 1.0)
        rgba[..., channel] = np.nan_to_num(scaled * 255.0).astype("uint8")
    rgba[..., 3] = np.where(missing, 0, 255)
    return _png(rgba)


def class_colours(model_item: dict[str, Any]) -> dict[int, tuple[int, int, int, int]]:
    """Mask value → RGBA for ``model_item``'s classes: the tiles' colours (one rule)."""
    classes = [{"value": c.value, "name": c.name} for c in ModelIO.from_item(model_item).classes]
    colormap = class_colormap(model_item, classes)
    if not isinstance(colormap, dict):  # class_colormap makes a dict; rio-tiler's type is wider
        raise TypeError(f"a class colour map is a dict, not {type(colormap).__name__}")
    colours: dict[int, tuple[int, int, int, int]] = {}
    for value, (red, green, blue, alpha) in colormap.items():
        colours[int(value)] = (int(red), int(green), int(blue), int(alpha))
    return colours


def legend(model_item: dict[str, Any]) -> list[dict[str, Any]]:
    """The classes with their colours (``#rrggbb``, or None where drawn transparent)."""
    colours = class_colours(model_item)
    out = []
    for cls in ModelIO.from_item(model_item).classes:
        r, g, b, a = colours.get(cls.value, (0, 0, 0, 0))
        out.append(
            {
                "value": cls.value,
                "name": cls.label,
                "color": f"#{r:02x}{g:02x}{b:02x}" if a else None,
            }
        )
    return out


def mask_png(mask: np.ndarray, colours: dict[int, tuple[int, int, int, int]]) -> bytes:
    """A class mask coloured by ``colours``; unlisted values and no data transparent.

    A hand label's ``IGNORE`` pixels are grey: the label says nothing there, which a
    reviewer must be able to tell from "not water".
    """
    rgba = np.zeros((*mask.shape, 4), dtype="uint8")
    for value, colour in colours.items():
        rgba[mask == value] = colour
    rgba[mask == IGNORE] = GREY
    return _png(rgba)
