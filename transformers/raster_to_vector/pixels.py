"""Polygons of a class mask in pixel coordinates, cleaned and simplified.

Everything here works on pixel corners (column, row): coordinates are small integers, so
edges shared by neighbouring polygons are bit-identical, areas are exact pixel counts, and
no step depends on the mask's CRS. :mod:`.georef` converts metres to pixels beforehand and
moves the result to lon/lat afterwards.

The steps, each vectorised over all polygons at once:

1. :func:`polygonize` runs ``rasterio.features.shapes`` (4-connectivity, so every polygon
   GDAL returns is valid and same-class polygons touch at most at corners) and packs the
   rings into flat NumPy arrays instead of one shapely object per polygon.
2. :func:`remove_small` drops islands (polygons) and holes (interior rings) below a
   minimum area; a hole that contains no-data pixels is kept, so filling it never covers
   no-data.
3. Simplification, one of two ways. :func:`simplify` runs Douglas-Peucker per polygon and
   redoes the few that came out invalid with the topology-preserving variant: fast, but
   neighbouring classes are simplified independently. :func:`simplify_coverage` (GEOS
   coverage simplification, ~10x slower on large masks) simplifies each shared edge once
   for both sides, no-data included, so classes neither overlap nor leave gaps.
4. :func:`resolve_conflicts` puts back the original of any simplified polygon that
   overlaps another class (after Douglas-Peucker, usually every polygon bordering another
   class; after coverage simplification, none), and :func:`clip_to_data` cuts away what a
   simplified outline took from no-data. The result is valid, classes never overlap, and
   no-data is never covered.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from shapely import GeometryType


@dataclass(frozen=True)
class RingArrays:
    """Polygons as flat arrays: the layout of :func:`shapely.from_ragged_array`.

    ``coords[ring_offsets[k]:ring_offsets[k+1]]`` is ring ``k`` (closed); rings
    ``polygon_offsets[p]`` up to ``polygon_offsets[p+1]`` belong to polygon ``p``, its
    exterior first; ``values[p]`` is the polygon's mask value.
    """

    coords: np.ndarray
    ring_offsets: np.ndarray
    polygon_offsets: np.ndarray
    values: np.ndarray

    @property
    def polygon_count(self) -> int:
        return len(self.polygon_offsets) - 1

    def to_polygons(self) -> np.ndarray:
        """One shapely Polygon per polygon, built in one call."""
        if self.polygon_count == 0:
            return np.empty(0, dtype=object)
        return shapely.from_ragged_array(
            GeometryType.POLYGON, self.coords, (self.ring_offsets, self.polygon_offsets)
        )

    def ring_areas(self) -> np.ndarray:
        """Unsigned area of every ring (shoelace formula over the flat coordinates)."""
        x, y = self.coords[:, 0], self.coords[:, 1]
        terms = x[:-1] * y[1:] - x[1:] * y[:-1]
        # The term joining the last point of a ring to the first of the next is not an edge.
        terms[self.ring_offsets[1:-1] - 1] = 0.0
        sums = np.add.reduceat(terms, self.ring_offsets[:-1]) if len(terms) else terms
        return np.abs(sums) / 2.0

    def select(self, keep_polygons: np.ndarray, keep_rings: np.ndarray) -> RingArrays:
        """The polygons and rings flagged to keep (a dropped polygon drops all its rings)."""
        rings_per_polygon = np.diff(self.polygon_offsets)
        polygon_of_ring = np.repeat(np.arange(self.polygon_count), rings_per_polygon)
        keep_rings = keep_rings & keep_polygons[polygon_of_ring]
        ring_lengths = np.diff(self.ring_offsets)[keep_rings]
        coord_keep = np.repeat(keep_rings, np.diff(self.ring_offsets))
        kept_rings_per_polygon = np.bincount(
            polygon_of_ring[keep_rings], minlength=self.polygon_count
        )[keep_polygons]
        return RingArrays(
            coords=self.coords[coord_keep],
            ring_offsets=np.concatenate([[0], np.cumsum(ring_lengths)]),
            polygon_offsets=np.concatenate([[0], np.cumsum(kept_rings_per_polygon)]),
            values=self.values[keep_polygons],
        )


def polygonize(source: np.ndarray, include: np.ndarray | None) -> RingArrays:
    """Polygons of the connected regions of ``source`` where ``include`` is true.

    ``source`` must have a dtype ``rasterio.features.shapes`` accepts. Coordinates are pixel
    corners (the identity transform).

    GDAL scans every pixel it is given, so only the bounding box of the included pixels is
    passed (a no-data stripe along one edge is polygonised in 7 ms instead of 260 ms at
    4,096 px), and the coordinates are shifted back. The GeoJSON-like features GDAL yields
    are tens of thousands of small Python containers kept alive together, which makes the
    cyclic garbage collector rescan them again and again (+55 % on a 4,096 px mask); none
    of them forms a cycle, so collection is paused while they are built. They are packed
    into flat arrays a chunk at a time (:data:`_CHUNK_FEATURES`), so memory follows the
    arrays, not the Python objects.
    """
    row0, col0 = 0, 0
    if include is not None:
        rows, cols = np.flatnonzero(include.any(axis=1)), np.flatnonzero(include.any(axis=0))
        if len(rows) == 0:
            return _no_polygons()
        row0, col0 = int(rows[0]), int(cols[0])
        window = (slice(row0, int(rows[-1]) + 1), slice(col0, int(cols[-1]) + 1))
        source, include = source[window], include[window]
    shapes = rasterio.features.shapes(source, mask=include, connectivity=4)
    chunks = []
    while chunk := _packed(itertools.islice(shapes, _CHUNK_FEATURES)):
        chunks.append(chunk)
    if not chunks:
        return _no_polygons()
    polygons = _concatenated(chunks)
    if row0 or col0:
        polygons.coords[:] += (col0, row0)
    return polygons


_CHUNK_FEATURES = 20_000
"""Features GDAL yields that are held as Python objects at once: a feature's coordinates
take ~230 bytes a vertex as Python floats and tuples against 16 in a packed array, so a
speckled 4,096 px mask (3 million vertices) held whole took 700 MB more than in chunks."""


def _packed(features: Iterable[tuple[dict, float]]) -> RingArrays | None:
    """One chunk of GDAL's features as flat arrays; ``None`` when there are none."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        chunk = list(features)
    finally:
        if collecting:
            gc.enable()
    if not chunk:
        return None
    rings = [ring for geometry, _ in chunk for ring in geometry["coordinates"]]
    ring_lengths = np.fromiter((len(ring) for ring in rings), np.int64, len(rings))
    rings_per_polygon = np.fromiter(
        (len(geometry["coordinates"]) for geometry, _ in chunk), np.int64, len(chunk)
    )
    coords = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(rings)),
        np.float64,
        2 * int(ring_lengths.sum()),
    ).reshape(-1, 2)
    values = np.fromiter((value for _, value in chunk), np.float64, len(chunk))
    return RingArrays(
        coords=coords,
        ring_offsets=np.concatenate([[0], np.cumsum(ring_lengths)]),
        polygon_offsets=np.concatenate([[0], np.cumsum(rings_per_polygon)]),
        values=values.astype(np.int64),
    )


def _concatenated(chunks: list[RingArrays]) -> RingArrays:
    """The chunks as one set of arrays, offsets shifted to follow each other."""
    if len(chunks) == 1:
        return chunks[0]
    return RingArrays(
        coords=np.concatenate([c.coords for c in chunks]),
        ring_offsets=_chained_offsets([c.ring_offsets for c in chunks]),
        polygon_offsets=_chained_offsets([c.polygon_offsets for c in chunks]),
        values=np.concatenate([c.values for c in chunks]),
    )


def _chained_offsets(offsets: list[np.ndarray]) -> np.ndarray:
    """Offset arrays (each starting at 0) of consecutive chunks as one offset array."""
    shifts = np.cumsum([0] + [o[-1] for o in offsets[:-1]])
    return np.concatenate([[0]] + [o[1:] + s for o, s in zip(offsets, shifts, strict=True)])


def _no_polygons() -> RingArrays:
    return RingArrays(
        coords=np.empty((0, 2)),
        ring_offsets=np.zeros(1, dtype=np.int64),
        polygon_offsets=np.zeros(1, dtype=np.int64),
        values=np.empty(0, dtype=np.int64),
    )


def interiors_intersect(queries: np.ndarray, tree_geoms: np.ndarray) -> np.ndarray:
    """Pairs (query index, tree index), as a 2xN array, whose interiors share area.

    Touching along an edge or at a corner does not count.
    """
    if len(queries) == 0 or len(tree_geoms) == 0:
        return np.empty((2, 0), dtype=np.int64)
    pairs = shapely.STRtree(tree_geoms).query(queries, predicate="intersects")
    if pairs.shape[1] == 0:
        return pairs
    overlap = shapely.relate_pattern(queries[pairs[0]], tree_geoms[pairs[1]], "T********")
    return pairs[:, overlap]


def remove_small(polygons: RingArrays, min_area_px: float, nodata: np.ndarray) -> RingArrays:
    """Drop islands and holes smaller than ``min_area_px`` pixels.

    An island is a polygon (one connected region of a class) whose area is below the
    threshold; a hole is an interior ring enclosing less than the threshold. Whatever lies
    in a removed hole is itself smaller than the hole, so it is removed as an island and
    classes never overlap. Holes containing no-data pixels (``nodata``: polygons of the
    no-data region) are kept, so no-data is never covered.
    """
    if min_area_px <= 0 or polygons.polygon_count == 0:
        return polygons
    ring_areas = polygons.ring_areas()
    rings_per_polygon = np.diff(polygons.polygon_offsets)
    polygon_of_ring = np.repeat(np.arange(polygons.polygon_count), rings_per_polygon)
    is_exterior = np.zeros(len(ring_areas), dtype=bool)
    is_exterior[polygons.polygon_offsets[:-1]] = True
    hole_area = np.bincount(
        polygon_of_ring[~is_exterior],
        weights=ring_areas[~is_exterior],
        minlength=polygons.polygon_count,
    )
    polygon_area = ring_areas[is_exterior] - hole_area
    keep_polygons = polygon_area >= min_area_px
    keep_rings = is_exterior | (ring_areas >= min_area_px)
    small_holes = np.flatnonzero(~keep_rings & keep_polygons[polygon_of_ring])
    if len(small_holes) and len(nodata):
        small_holes = small_holes[_near(polygons, small_holes, shapely.total_bounds(nodata))]
    if len(small_holes) and len(nodata):
        starts, ends = polygons.ring_offsets[small_holes], polygons.ring_offsets[small_holes + 1]
        hole_polygons = shapely.polygons(
            shapely.linearrings(
                polygons.coords[_ranges(starts, ends)],
                indices=np.repeat(np.arange(len(small_holes)), ends - starts),
            )
        )
        holding_nodata = interiors_intersect(hole_polygons, nodata)[0]
        keep_rings[small_holes[np.unique(holding_nodata)]] = True
    return polygons.select(keep_polygons, keep_rings)


def _near(polygons: RingArrays, rings: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Which of ``rings`` have a bounding box meeting ``bounds`` (xmin, ymin, xmax, ymax).

    Computed on the flat coordinates, so the rings far from no-data (usually all but a
    few) are never built as geometries.
    """
    starts = polygons.ring_offsets[rings]
    lengths = polygons.ring_offsets[rings + 1] - starts
    coords = polygons.coords[_ranges(starts, starts + lengths)]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    low = np.minimum.reduceat(coords, offsets)
    high = np.maximum.reduceat(coords, offsets)
    return (
        (high[:, 0] >= bounds[0])
        & (low[:, 0] <= bounds[2])
        & (high[:, 1] >= bounds[1])
        & (low[:, 1] <= bounds[3])
    )


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])``, without a loop."""
    lengths = ends - starts
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offsets + np.arange(int(lengths.sum()))


def simplify(polygons: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Douglas-Peucker per polygon; invalid or changed-topology results redone safely.

    The plain algorithm is ~5x faster than the topology-preserving one but may make a ring
    cross itself, collapse a polygon or lose a hole. Those polygons (usually a handful) are
    simplified again with topology preservation, and kept unsimplified if even that fails.
    """
    if tolerance_px <= 0 or len(polygons) == 0:
        return polygons
    simplified = shapely.simplify(polygons, tolerance_px, preserve_topology=False)
    broken = _broken(polygons, simplified)
    if broken.any():
        again = shapely.simplify(polygons[broken], tolerance_px, preserve_topology=True)
        still_broken = _broken(polygons[broken], again)
        again[still_broken] = polygons[broken][still_broken]
        simplified[broken] = again
    return simplified


def simplify_coverage(polygons: np.ndarray, tolerance_px: float, nodata: np.ndarray) -> np.ndarray:
    """Visvalingam-Whyatt coverage simplification: shared edges stay shared, no gaps.

    The polygons of every class and of no-data form one coverage, so edges along no-data
    are simplified consistently too (:func:`clip_to_data` then removes what they took
    from it). GDAL's polygons are not strictly edge-matched where three regions meet (one
    edge runs straight past the others' common corner); GEOS 3.14 simplifies them
    consistently all the same, which the property tests check (no gaps, no overlaps).
    """
    if tolerance_px <= 0 or len(polygons) == 0:
        return polygons
    simplified = shapely.coverage_simplify(np.concatenate([polygons, nodata]), tolerance_px)
    simplified = simplified[: len(polygons)]
    broken = _broken(polygons, simplified)
    simplified[broken] = polygons[broken]
    return simplified


def clip_to_data(
    polygons: np.ndarray, values: np.ndarray, nodata: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Remove from each polygon what it covers of no-data; returns polygons and values.

    Only polygons whose interior meets no-data are touched; a polygon cut in pieces
    becomes several polygons of the same class (pieces of one region never share an edge).
    """
    pairs = interiors_intersect(polygons, nodata)
    if pairs.shape[1] == 0:
        return polygons, values
    order = np.argsort(pairs[0], kind="stable")
    hit, group = np.unique(pairs[0][order], return_inverse=True)
    blockers = shapely.multipolygons(nodata[pairs[1][order]], indices=group)
    pieces, piece_of = shapely.get_parts(
        shapely.difference(polygons[hit], blockers), return_index=True
    )
    keep = (shapely.get_type_id(pieces) == GeometryType.POLYGON) & ~shapely.is_empty(pieces)
    untouched = np.ones(len(polygons), dtype=bool)
    untouched[hit] = False
    return (
        np.concatenate([polygons[untouched], pieces[keep]]),
        np.concatenate([values[untouched], values[hit][piece_of[keep]]]),
    )


def _broken(originals: np.ndarray, simplified: np.ndarray) -> np.ndarray:
    return (
        shapely.is_empty(simplified)
        | (shapely.get_type_id(simplified) != GeometryType.POLYGON)
        | (shapely.get_num_interior_rings(simplified) != shapely.get_num_interior_rings(originals))
        | ~shapely.is_valid(simplified)
    )


def resolve_conflicts(
    simplified: np.ndarray, originals: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Put back the original of every simplified polygon that now overlaps another.

    A conflict is a shared interior with another polygon (of any class) or, within one
    class, a shared edge (a MultiPolygon's parts may only touch at points). The originals
    form a valid coverage, so reverting converges; each round only checks the polygons
    reverted in the round before.
    """
    current = simplified.copy()
    reverted = np.zeros(len(current), dtype=bool)
    to_check = np.flatnonzero(~shapely.equals_exact(current, originals, 0.0))
    while len(to_check):
        pairs = _conflicts(current[to_check], current, to_check, values)
        if pairs.shape[1] == 0:
            break
        involved = np.unique(np.concatenate([to_check[pairs[0]], pairs[1]]))
        involved = involved[~reverted[involved]]
        if len(involved) == 0:
            break
        current[involved] = originals[involved]
        reverted[involved] = True
        to_check = involved
    return current


def _conflicts(
    queries: np.ndarray, tree_geoms: np.ndarray, query_ids: np.ndarray, values: np.ndarray
) -> np.ndarray:
    tree = shapely.STRtree(tree_geoms)
    pairs = tree.query(queries, predicate="intersects")
    pairs = pairs[:, query_ids[pairs[0]] != pairs[1]]
    if pairs.shape[1] == 0:
        return pairs
    relation = shapely.relate(queries[pairs[0]], tree_geoms[pairs[1]])
    interiors_meet = np.array([r[0] != "F" for r in relation], dtype=bool)
    same_class = values[query_ids[pairs[0]]] == values[pairs[1]]
    edges_meet = np.array([r[4] == "1" for r in relation], dtype=bool)
    return pairs[:, interiors_meet | (same_class & edges_meet)]
