"""Loading a package's training scene: from a data directory or URI, or the sample registry.

The ``data`` parameter of ``train``/``evaluate`` names a directory (later: a dataset version
checked out by DVC) or a URI prefix that rasterio reads (``s3://``, ``https://``); the files
are found under it at the paths ``package.yaml`` gives. Left empty, the same paths are
looked up in the sample-data registry, which verifies their checksums.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geomlops import sample_data
from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.ml.raster import Raster, read_bands, read_label
from geomlops.ml.spec import ModelPackage

IGNORE = -1
"""Label value the loss and the metrics skip: no-data labels and pixels without input."""


@dataclass(frozen=True)
class Scene:
    """A scene's bands (NaN = no data) and its label (``IGNORE`` where unusable)."""

    image: Raster
    label: np.ndarray


def resolve(relative: str, data: str | None) -> str:
    """Where to read ``relative`` from: under ``data``, or from the sample-data registry."""
    if not data:
        return str(sample_data.fetch(relative))
    if "://" in data:
        return f"{data.rstrip('/')}/{relative}"
    path = Path(data) / relative
    if not path.is_file():
        raise NotFoundError(
            f"{relative} not found under data directory {data}",
            hint="pass the directory that holds the dataset at the paths package.yaml names, "
            "or leave `data` empty to use the sample-data registry (GEOMLOPS_SAMPLE_DATA)",
        )
    return str(path)


def load_scene(package: ModelPackage, data: str | None) -> Scene:
    """Read the image bands the package declares and its label, on the same pixel grid."""
    dataset = package.spec.dataset
    image_path = resolve(dataset.image, data)
    label_path = resolve(dataset.label, data)
    image = read_bands(image_path, package.spec.input.bands)
    nodata = package.spec.input.nodata
    if nodata is not None:
        image.data[image.data == nodata] = np.nan
    label = read_label(label_path)
    if label.shape != image.shape or not label.transform.almost_equals(image.transform):
        raise ValidationFailed(
            f"label {label_path} is not on the pixel grid of image {image_path}",
            problems=[f"image {image.shape} {image.transform!r}", f"label {label.shape}"],
        )
    target = label.data.astype("int64")
    unusable = (target == dataset.label_nodata) | np.isnan(image.data).any(axis=0)
    target[unusable] = IGNORE
    return Scene(image=image, label=target)
