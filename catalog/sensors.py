"""Band profiles of known sensors: names, common names and centre wavelengths.

A GeoTIFF often names its bands (Sen1Floods11 writes ``B1``…``B12``, ``VV``/``VH`` into the
band descriptions) but says nothing else about them; a profile adds the EO metadata that
models and analysts match on. A profile is picked by ``--sensor`` or recognised from the
band descriptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BandInfo:
    """One band of a sensor."""

    name: str
    common_name: str | None = None
    center_wavelength: float | None = None
    """Micrometres."""


@dataclass(frozen=True)
class SensorProfile:
    """The bands of one sensor product, in file order."""

    name: str
    title: str
    bands: tuple[BandInfo, ...]
    optical: bool = True

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)


# Sentinel-2 MSI L1C as Sen1Floods11 stores it (13 bands, names without zero padding).
SENTINEL2_L1C = SensorProfile(
    "sentinel-2-l1c",
    "Sentinel-2 MSI Level-1C, 13 bands",
    (
        BandInfo("B1", "coastal", 0.443),
        BandInfo("B2", "blue", 0.490),
        BandInfo("B3", "green", 0.560),
        BandInfo("B4", "red", 0.665),
        BandInfo("B5", "rededge", 0.705),
        BandInfo("B6", "rededge", 0.740),
        BandInfo("B7", "rededge", 0.783),
        BandInfo("B8", "nir", 0.842),
        BandInfo("B8A", "nir08", 0.865),
        BandInfo("B9", "nir09", 0.945),
        BandInfo("B10", "cirrus", 1.375),
        BandInfo("B11", "swir16", 1.610),
        BandInfo("B12", "swir22", 2.190),
    ),
)

SENTINEL1_GRD = SensorProfile(
    "sentinel-1-grd",
    "Sentinel-1 GRD backscatter, VV and VH",
    (BandInfo("VV"), BandInfo("VH")),
    optical=False,
)

PROFILES: dict[str, SensorProfile] = {p.name: p for p in (SENTINEL2_L1C, SENTINEL1_GRD)}


def recognise(descriptions: Sequence[str | None]) -> SensorProfile | None:
    """The profile whose band names are exactly the file's band descriptions, if any."""
    names = tuple(d or "" for d in descriptions)
    return next((p for p in PROFILES.values() if p.band_names == names), None)
