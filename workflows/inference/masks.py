"""Post-processing masks: pixels whose prediction cannot be trusted become no data.

No data: any model band is NaN or equals the file's (or the model's) nodata value. Cloud:
only where the scene carries a band that says so — a model cannot see the ground under a
cloud, and calling it "not water" would be a claim nobody made. Recognised cloud layers, by
band name:

- ``SCL`` (Sentinel-2 L2A scene classification): 3 cloud shadow, 8/9 cloud medium/high
  probability, 10 thin cirrus;
- ``QA60`` (Sentinel-2 L1C): bit 10 opaque cloud, bit 11 cirrus;
- ``Fmask`` (HLS): bit 1 cloud, bit 2 adjacent to cloud, bit 3 cloud shadow.

A scene without one of these is not cloud-masked, and its outputs say so.
"""

from __future__ import annotations

import numpy as np

CLOUD_BANDS = {"SCL": "scl", "QA60": "qa60", "FMASK": "fmask"}
"""Band name (upper case) -> how it is read."""

_SCL_CLOUD = (3, 8, 9, 10)


def cloud_kind(band_names: list[str]) -> tuple[int, str] | None:
    """(1-based index, kind) of the first recognised cloud band among ``band_names``."""
    for index, name in enumerate(band_names, start=1):
        kind = CLOUD_BANDS.get((name or "").upper())
        if kind:
            return index, kind
    return None


def cloud_mask(kind: str, values: np.ndarray) -> np.ndarray:
    """Boolean mask (True = cloud or shadow) from a cloud band's values."""
    if kind == "scl":
        return np.isin(values.astype("int32"), _SCL_CLOUD)
    bits = np.nan_to_num(values, nan=0).astype("int64")
    if kind == "qa60":
        return ((bits >> 10) & 1).astype(bool) | ((bits >> 11) & 1).astype(bool)
    if kind == "fmask":
        return ((bits >> 1) & 0b111).astype(bool)
    raise ValueError(f"unknown cloud band kind {kind!r}")


def nodata_mask(bands: np.ndarray, nodata: float | None) -> np.ndarray:
    """Boolean mask (True = no data) over bands (C x H x W): NaN or ``nodata`` in any band."""
    if bands.dtype.kind == "f":
        missing = np.isnan(bands).any(axis=0)
    else:  # integers cannot be NaN
        missing = np.zeros(bands.shape[1:], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        missing |= (bands == nodata).any(axis=0)
    return missing
