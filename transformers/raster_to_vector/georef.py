"""Where a mask's pixels are on Earth: pixel sizes in metres, areas, and the move to lon/lat.

Polygons are built and cleaned in *pixel* coordinates (integer corners, so shared edges are
exact and areas are pixel counts). This module turns metre-based options into pixel units
and moves finished geometries to EPSG:4326 in one vectorised pass: the affine transform
and the pyproj transformation are applied to every coordinate of every geometry at once,
because reprojecting geometry by geometry is about 200 times slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from rasterio.errors import CRSError

from geomlops.errors import ValidationFailed

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


def _as_affine(transform: Affine | Sequence[float]) -> Affine:
    if isinstance(transform, Affine):
        return transform
    values = [float(v) for v in transform]
    if len(values) == 9:
        values = values[:6]
    if len(values) != 6:
        raise ValidationFailed(
            "transform: expected an affine transform of 6 numbers (a, b, c, d, e, f)",
            problems=[f"got {len(values)} numbers"],
        )
    return Affine(*values)


def _as_crs(crs: Any) -> CRS:
    if crs is None or crs == "":
        raise ValidationFailed(
            "crs: the mask has no coordinate reference system",
            hint="pass the CRS of the image the mask was predicted from (e.g. 'EPSG:32630')",
        )
    try:
        return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    except CRSError as error:
        raise ValidationFailed(
            f"crs: {crs!r} is not a coordinate reference system: {error}"
        ) from None


def geodesic_area_m2(geometry: shapely.Geometry) -> float:
    """Area of a lon/lat geometry on the WGS84 ellipsoid, square metres."""
    return abs(_GEOD.geometry_area_perimeter(geometry)[0])


@dataclass(frozen=True)
class Georeference:
    """A mask's affine transform, CRS and shape, and what follows from them."""

    transform: Affine
    crs: CRS
    shape: tuple[int, int]

    @classmethod
    def of(
        cls, transform: Affine | Sequence[float], crs: Any, shape: tuple[int, int]
    ) -> Georeference:
        """Validate and normalise what a caller passed (Affine or 6 numbers; any CRS form)."""
        affine = _as_affine(transform)
        if not all(math.isfinite(v) for v in affine[:6]) or affine.determinant == 0:
            raise ValidationFailed(
                f"transform: {tuple(affine[:6])} is not an invertible affine transform"
            )
        georef = cls(affine, _as_crs(crs), (int(shape[0]), int(shape[1])))
        if not (georef.crs.is_geographic or georef.crs.is_projected):
            raise ValidationFailed(f"crs: {georef.crs} is neither geographic nor projected")
        return georef

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs.is_geographic)

    @cached_property
    def _metre_factor(self) -> float:
        """Metres per CRS linear unit (projected CRSs may be in feet)."""
        return float(self.crs.linear_units_factor[1])

    @cached_property
    def pixel_size_m(self) -> tuple[float, float]:
        """Width and height of one pixel in metres.

        For a geographic CRS they are geodesic lengths at the centre of the mask: exact
        enough for turning tolerances into pixels, which is all they are used for.
        """
        t = self.transform
        if not self.is_geographic:
            factor = self._metre_factor
            return math.hypot(t.a, t.d) * factor, math.hypot(t.b, t.e) * factor
        col, row = self.shape[1] / 2, self.shape[0] / 2
        lon0, lat0 = t @ (col, row)
        lon1, lat1 = t @ (col + 1, row)
        lon2, lat2 = t @ (col, row + 1)
        _, _, width = _GEOD.inv(lon0, lat0, lon1, lat1)
        _, _, height = _GEOD.inv(lon0, lat0, lon2, lat2)
        return abs(width), abs(height)

    @cached_property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in square metres (geodesic, at the centre, when geographic)."""
        if not self.is_geographic:
            return abs(self.transform.determinant) * self._metre_factor**2
        t = self.transform
        col, row = self.shape[1] / 2, self.shape[0] / 2
        corners = [t @ (col + dc, row + dr) for dc, dr in ((0, 0), (0, 1), (1, 1), (1, 0))]
        area, _ = _GEOD.polygon_area_perimeter([c[0] for c in corners], [c[1] for c in corners])
        return abs(area)

    def metres_to_pixels(self, metres: float) -> float:
        """A length in metres as pixels, measured along the larger pixel side.

        Using the larger side means a shift of that many pixels in any direction stays
        within ``metres`` on the ground.
        """
        return metres / max(self.pixel_size_m)

    def area_to_pixels(self, square_metres: float) -> float:
        """An area in square metres as a (fractional) number of pixels."""
        return square_metres / self.pixel_area_m2

    @cached_property
    def _to_wgs84(self) -> Transformer | None:
        if self.crs == WGS84:
            return None
        return Transformer.from_crs(
            ProjCRS.from_wkt(self.crs.to_wkt()), "EPSG:4326", always_xy=True
        )

    def pixel_to_lonlat(self, precision: int) -> Callable[[np.ndarray], np.ndarray]:
        """A function for :func:`shapely.transform`: (col, row) pixel corners → (lon, lat).

        Applies the affine transform, the CRS transformation and the rounding to
        ``precision`` decimals to all coordinates in one go.
        """
        a, b, c, d, e, f = self.transform[:6]
        transformer = self._to_wgs84

        def convert(pixels: np.ndarray) -> np.ndarray:
            cols, rows = pixels[:, 0], pixels[:, 1]
            x = a * cols + b * rows + c
            y = d * cols + e * rows + f
            if transformer is not None:
                x, y = transformer.transform(x, y)
            lonlat = np.column_stack([x, y])
            if not np.isfinite(lonlat).all():
                raise ValidationFailed(
                    f"crs: coordinates of the mask cannot be transformed from {self.crs} "
                    "to EPSG:4326",
                    hint="check that the transform and CRS belong together",
                )
            return np.round(lonlat, precision)

        return convert

    def areas_m2(self, pixel_geoms: np.ndarray, lonlat_geoms: np.ndarray) -> np.ndarray:
        """Area of each geometry in square metres.

        Projected CRS: planar area in that CRS (pixel area x pixel count, exact for the
        unsimplified mask). Geographic CRS: geodesic area on the WGS84 ellipsoid of the
        lon/lat geometry, which needs counter-clockwise exteriors (RFC 7946 orientation).
        """
        if not self.is_geographic:
            return (
                shapely.area(pixel_geoms)
                * abs(self.transform.determinant)
                * (self._metre_factor**2)
            )
        return np.array(
            [abs(_GEOD.geometry_area_perimeter(geom)[0]) for geom in lonlat_geoms], dtype=float
        )
