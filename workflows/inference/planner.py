"""The planner: AOI x dates -> scenes -> tiles -> a bounded number of shards.

1. The model version is resolved (production unless a version is asked for) and its MLM
   item says which bands it reads and its input size.
2. An AOI reaching beyond the model's footprint is refused unless the request allows it
   (then every output is flagged).
3. The imagery collection (the platform's catalog, or any STAC API set by
   ``GEOMLOPS_INFER_STAC_URL``: the same search) is searched for scenes intersecting the
   AOI in the time range — only among the scenes named, when the request pins them (as
   ``geomlops reproduce`` does, so scenes ingested since do not join) — and a scene
   lacking a model band is skipped, with the reason kept.
4. Each scene's pixel grid is cut into square tiles of ``tile_patches`` model inputs,
   aligned on the scene's origin so a tile's id is stable across runs; the tiles that
   intersect the AOI are kept.
5. Tiles are grouped, in order (neighbours together: they share COG blocks), into at most
   ``max_shards`` shards: one pod per shard, never one per tile.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.errors import RasterioIOError
from shapely.geometry.base import BaseGeometry

from geomlops import objects
from geomlops.connections import Connections, get_connections
from geomlops.errors import NotFoundError, ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.io import ModelIO
from geomlops.model.kinds import OutputKind
from geomlops.settings import InferenceSettings, Settings, get_settings
from geomlops.workflows.inference import masks
from geomlops.workflows.inference.aoi import as_geojson, in_crs, outside_fraction, parse_aoi
from geomlops.workflows.inference.config import (
    ClassPin,
    CloudBand,
    InferenceRunConfig,
    MaskPin,
    ModelPin,
    OutputPin,
    ProcessorPin,
    RequestPin,
    ScenePin,
    ShardPlan,
    Tile,
)
from geomlops.workflows.inference.hrefs import check_asset_href
from geomlops.workflows.inference.storage import gdal_env, raster_path

log = logging.getLogger(__name__)


class OutsideRegion(ValidationFailed):
    """The AOI reaches beyond where the model was trained and evaluated."""


@dataclass(frozen=True)
class Plan:
    """What ``plan`` hands to the rest of the workflow."""

    config_uri: str
    config: InferenceRunConfig
    shards: list[int]
    """Shards to run: all of them, or on resume those with tiles still missing."""


# --- model and region ---------------------------------------------------------------------
def pin_model(name: str, version: str | None, settings: Settings) -> tuple[ModelPin, dict]:
    """The model version to use and its catalog item."""
    from geomlops.model.resolve import resolve_model

    resolved = resolve_model(name, version or None, settings=settings)
    io = ModelIO.from_item(resolved.item)
    props = resolved.item["properties"]
    pin = ModelPin(
        name=resolved.name,
        version=resolved.version,
        item_id=resolved.item_id,
        # The training run's model folder: what `evaluate` loaded, with the exported program
        # (MLflow 3 resolves `models:/NAME/N` to a logged model that may lack the flavour).
        model_uri=(
            f"runs:/{props[prop.MLFLOW_RUN_ID]}/model"
            if props.get(prop.MLFLOW_RUN_ID)
            else resolved.model_uri
        ),
        stage=resolved.stage,
        image=str(props.get(prop.IMAGE) or settings.training.platform_image),
        bands=list(io.bands),
        mean=list(io.mean),
        stddev=list(io.stddev),
        patch_size=io.patch_size,
        classes=[ClassPin(value=c.value, name=c.name) for c in io.classes],
        nodata=io.nodata,
        output=_output_pin(io),
        artifact_uri=resolved.artifact_uri,
        runtime=resolved.runtime,
    )
    return pin, resolved.item


def _output_pin(io: ModelIO) -> OutputPin | None:
    """The output's kind for the plan; None for a class mask (as plans always recorded it)."""
    spec = io.output_spec
    if spec.kind is OutputKind.CLASS_MASK:
        return None
    if not spec.kind.rasterised:
        raise ValidationFailed(
            f"the model's output is {spec.kind.value}: batch inference predicts per-pixel "
            "outputs (class mask, probability, continuous) only",
            hint="register a per-pixel model, or run a chip classifier outside batch inference",
        )
    return OutputPin(
        kind=spec.kind, threshold=spec.threshold, colormap=spec.colormap, unit=spec.unit
    )


def check_region(
    aoi: BaseGeometry,
    model_item: dict[str, Any],
    *,
    allow_outside_region: bool,
    settings: InferenceSettings,
) -> float:
    """The AOI's share outside the model's footprint; raises OutsideRegion unless allowed."""
    fraction = outside_fraction(aoi, model_item.get("geometry"))
    if fraction > settings.max_outside_fraction and not allow_outside_region:
        bbox = model_item.get("bbox")
        raise OutsideRegion(
            f"{fraction:.0%} of the AOI lies outside the region model item "
            f"{model_item['id']!r} was trained and evaluated on (bbox {bbox})",
            hint="predictions there are unvalidated; pass --allow-outside-region to run anyway "
            "(every output is then flagged geomlops:outside_region)",
        )
    return fraction


def pin_mask(
    pipeline_uri: str,
    model: ModelPin,
    settings: Settings,
    *,
    aoi: BaseGeometry,
    allow_outside_region: bool,
) -> tuple[MaskPin, dict[str, Any]]:
    """A pipeline's mask model version and rule (for primary ``model``), and the spec.

    The spec must name ``model`` as its primary (and the version pinned, when it names
    one): the workflow's parameters and the spec cannot say two things.
    """
    from geomlops.model.pipeline import mask_rule, parse_pipeline

    document = objects.read_json(get_connections(settings), pipeline_uri)
    spec = parse_pipeline(document, pipeline_uri)
    if spec.model != model.name or (spec.version and spec.version != model.version):
        raise ValidationFailed(
            f"{pipeline_uri}: model {spec.model!r} (version {spec.version or 'production'}) "
            f"is not the run's model {model.name!r} version {model.version}",
            hint="run `geomlops infer --pipeline SPEC`: it takes the model from the spec",
        )
    pin, item = pin_model(spec.mask.model, spec.mask.version, settings)
    check_region(aoi, item, allow_outside_region=allow_outside_region, settings=settings.inference)
    rule = mask_rule(spec.mask, item)
    mask = MaskPin(
        model=pin, output=rule.output, channel=rule.channel, threshold=rule.threshold,
        drop=rule.drop,  # type: ignore[arg-type]
    )  # fmt: skip
    return mask, spec.model_dump(mode="json")


# --- scenes -------------------------------------------------------------------------------
def _asset(item: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    assets = item.get("assets") or {}
    if "image" in assets:
        return "image", assets["image"]
    for key, asset in assets.items():
        if "data" in (asset.get("roles") or []) and "tiff" in str(asset.get("type", "")):
            return key, asset
    return None


def _band_names(asset: dict[str, Any], item: dict[str, Any], descriptions: list[str]) -> list[str]:
    for bands in (asset.get("bands"), asset.get("eo:bands"), item["properties"].get("eo:bands")):
        if bands:
            return [str(b.get("name", "")) for b in bands]
    return [d or "" for d in descriptions]


def scene_pin(
    item: dict[str, Any],
    model: ModelPin,
    conn: Connections | None,
    settings: Settings | None = None,
    mask: ModelPin | None = None,
) -> ScenePin:
    """A scene usable by the model and a pipeline's mask model, or ValidationFailed.

    The error names what the scene lacks. Each model reads its own bands of it, by name.

    Its href is checked before GDAL opens it (:mod:`~geomlops.workflows.inference.hrefs`).
    """
    found = _asset(item)
    if found is None:
        raise ValidationFailed(f"imagery item {item['id']!r} has no GeoTIFF data asset")
    _, asset = found
    href = str(asset.get("href") or "")
    check_asset_href(href, str(item["id"]), settings or get_settings())
    try:
        with gdal_env(conn), rasterio.open(raster_path(href)) as src:
            crs, transform = src.crs, src.transform
            width, height, nodata = src.width, src.height, src.nodata
            descriptions = list(src.descriptions)
    except RasterioIOError as error:
        raise ValidationFailed(
            f"imagery item {item['id']!r}: cannot open {href}: {error}"
        ) from None
    if crs is None:
        raise ValidationFailed(f"imagery item {item['id']!r}: {href} has no CRS")
    names = _band_names(asset, item, descriptions)
    for reader in (model, mask):
        missing = [b for b in reader.bands if b not in names] if reader else []
        if reader and missing:
            raise ValidationFailed(
                f"imagery item {item['id']!r} lacks band(s) {', '.join(missing)} of the model "
                f"{reader.name}"
            )
    cloud = masks.cloud_kind(names)
    props = item["properties"]
    return ScenePin(
        item_id=item["id"],
        href=href,
        datetime=str(props.get("datetime") or props.get("start_datetime")),
        crs=crs.to_string() if crs.to_epsg() else crs.to_wkt(),
        transform=list(transform)[:6],
        width=width,
        height=height,
        band_indexes=[names.index(b) + 1 for b in model.bands],
        mask_band_indexes=[names.index(b) + 1 for b in mask.bands] if mask else None,
        nodata=None if nodata is None else float(nodata),
        cloud=CloudBand(index=cloud[0], kind=cloud[1]) if cloud else None,
    )


def find_scenes(
    aoi: BaseGeometry,
    datetime: str,
    model: ModelPin,
    settings: Settings,
    pinned: list[str] | None = None,
    mask: ModelPin | None = None,
) -> tuple[list[ScenePin], dict[str, str]]:
    """Usable scenes intersecting the AOI in the time range, and those skipped with why.

    ``pinned``: only these imagery items, every one of which must still be found.
    """
    from geomlops.catalog.client import CatalogClient

    inference = settings.inference
    client = (
        CatalogClient(inference.stac_url)
        if inference.stac_url
        else CatalogClient.from_settings(settings)
    )
    conn = get_connections(settings)
    scenes, skipped = [], {}
    with client:
        items = list(
            client.iter_search(
                collections=[inference.imagery_collection],
                intersects=as_geojson(aoi),
                datetime=datetime,
                ids=pinned or None,
            )
        )
    lost = sorted(set(pinned or ()) - {item["id"] for item in items})
    if lost:
        raise NotFoundError(
            f"imagery item(s) {', '.join(lost)} of collection {inference.imagery_collection!r} "
            f"no longer intersect the AOI in {datetime}",
            hint="the prediction's scenes must still be in the catalog to recompute it",
        )
    for item in sorted(items, key=lambda i: (i["properties"].get("datetime") or "", i["id"])):
        try:
            scenes.append(scene_pin(item, model, conn, settings, mask))
        except ValidationFailed as error:
            skipped[item["id"]] = error.message
            log.warning("skipping %s", error.message)
    return scenes, skipped


# --- tiles and shards ---------------------------------------------------------------------
def scene_tiles(scene: ScenePin, aoi: BaseGeometry, tile_size: int, *, strip: int) -> list[Tile]:
    """Tiles of the scene's grid (aligned on its origin) that intersect the AOI.

    They come in strips ``strip`` tiles wide, top to bottom within a strip, rather than row
    by row across the scene: a tile's halo reaches into the source blocks of the tiles
    around it, and the blocks the next tiles share stay in GDAL's cache only when those
    tiles are near. Row order would need two whole block rows of the scene cached, which
    grows with its width; strips need ``strip + 2`` blocks per row, whatever the width.
    Shards are consecutive runs of this order, so each is a compact patch of the scene.
    """
    native = in_crs(aoi, scene.crs)
    affine = rasterio.Affine(*scene.transform)
    rows = math.ceil(scene.height / tile_size)
    cols = math.ceil(scene.width / tile_size)
    grid_r, grid_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    order = np.lexsort((grid_c.ravel(), grid_r.ravel(), grid_c.ravel() // strip))
    top, left = grid_r.ravel()[order] * tile_size, grid_c.ravel()[order] * tile_size
    bottom = np.minimum(top + tile_size, scene.height)
    right = np.minimum(left + tile_size, scene.width)
    xs0, ys0 = affine * (left, top)
    xs1, ys1 = affine * (right, bottom)
    boxes = shapely.box(
        np.minimum(xs0, xs1), np.minimum(ys0, ys1), np.maximum(xs0, xs1), np.maximum(ys0, ys1)
    )
    shapely.prepare(native)
    keep = shapely.intersects(native, boxes) & ~shapely.touches(native, boxes)
    return [
        Tile(
            id=f"{scene.item_id}_r{t // tile_size:04d}_c{c // tile_size:04d}",
            scene=scene.item_id,
            row=int(t),
            col=int(c),
            height=int(b - t),
            width=int(r - c),
        )
        for t, c, b, r in zip(top[keep], left[keep], bottom[keep], right[keep], strict=True)
    ]


def shard_tiles(tiles: list[Tile], settings: InferenceSettings) -> list[list[Tile]]:
    """Consecutive runs of tiles, at most ``max_shards``, each of at least the minimum size."""
    wanted = max(1, min(settings.max_shards, len(tiles) // settings.min_tiles_per_shard))
    size = math.ceil(len(tiles) / wanted)
    return [tiles[i : i + size] for i in range(0, len(tiles), size)]


# --- the step -----------------------------------------------------------------------------
def plan(
    *,
    workflow: str,
    model: str,
    version: str | None,
    aoi_uri: str,
    datetime: str,
    allow_outside_region: bool,
    pinned_scenes: list[str] | None = None,
    pipeline_uri: str = "",
    settings: Settings | None = None,
    processors: list[ProcessorPin] | None = None,
) -> Plan:
    """Resolve the request, cut it into tiles and shards, and save the plan in S3.

    ``pinned_scenes`` pins the imagery items to use (all that the search finds when None);
    ``processors`` are the generic processors run after publishing (pinned by the caller).
    ``pipeline_uri``: the ``s3://`` pipeline spec (:mod:`geomlops.model.pipeline`) whose
    mask model gates ``model``'s answer; both versions are pinned here, once.
    """
    settings = settings or get_settings()
    conn = get_connections(settings)
    inference = settings.inference
    aoi = load_aoi(conn, aoi_uri)
    pin, item = pin_model(model, version, settings)
    fraction = check_region(
        aoi, item, allow_outside_region=allow_outside_region, settings=inference
    )
    mask, spec = (
        pin_mask(pipeline_uri, pin, settings, aoi=aoi, allow_outside_region=allow_outside_region)
        if pipeline_uri
        else (None, None)
    )
    scenes, skipped = find_scenes(
        aoi, datetime, pin, settings, pinned_scenes, mask.model if mask else None
    )
    if not scenes:
        hint = "ingest scenes with `geomlops imagery add FILE --datetime …`, or widen --datetime"
        where = f"collection {inference.imagery_collection!r} in {datetime}"
        if skipped:
            raise ValidationFailed(
                f"no scene of {where} that intersects the AOI has the bands {pin.name} reads",
                problems=[f"{k}: {v}" for k, v in skipped.items()],
                hint=hint,
            )
        raise NotFoundError(f"no scene of {where} intersects the AOI", hint=hint)
    tile_size = pin.patch_size * inference.tile_patches
    tiles = [
        t
        for scene in scenes
        for t in scene_tiles(scene, aoi, tile_size, strip=inference.strip_tiles)
    ]
    if not tiles:
        raise ValidationFailed("the AOI touches the scenes found but covers none of their pixels")
    shards = shard_tiles(tiles, inference)
    config = InferenceRunConfig(
        workflow=workflow,
        run_uri=f"s3://{settings.s3.bucket_predictions}/{workflow}",
        model=pin,
        mask=mask,
        pipeline=spec,
        request=RequestPin(
            aoi=as_geojson(aoi),
            aoi_uri=aoi_uri,
            datetime=datetime,
            allow_outside_region=allow_outside_region,
            outside_fraction=round(fraction, 6),
        ),
        scenes=scenes,
        skipped_scenes=skipped,
        tile_size=tile_size,
        overlap=min(inference.overlap, pin.patch_size // 2),
        batch_size=inference.batch_size,
        tile_retries=inference.tile_retries,
        device=inference.device,
        tile_count=len(tiles),
        shard_count=len(shards),
        vector_skip_values=list(inference.skip_values),
        min_area_m2=inference.min_area_m2,
        simplify_tolerance_m=inference.simplify_tolerance_m,
        processors=processors or [],
    )
    for index, shard in enumerate(shards):
        objects.write_json(
            conn, config.shard_uri(index), ShardPlan(shard=index, tiles=shard).model_dump()
        )
    uri = config.save(conn)
    log.info(
        "planned %d tile(s) of %d px over %d scene(s) in %d shard(s); skipped %d scene(s)",
        len(tiles), tile_size, len(scenes), len(shards), len(skipped),
    )  # fmt: skip
    return Plan(uri, config, list(range(len(shards))))


def load_aoi(conn: Connections, uri: str) -> BaseGeometry:
    """The AOI document at an ``s3://`` URI (what ``geomlops infer`` uploads)."""
    return parse_aoi(objects.read_json(conn, uri), uri)


def resume_plan(run: str, settings: Settings | None = None) -> Plan:
    """The saved plan of ``run``, with only the shards that still miss tiles."""
    from geomlops.workflows.inference.progress import missing_by_shard

    settings = settings or get_settings()
    conn = get_connections(settings)
    uri = f"s3://{settings.s3.bucket_predictions}/{run}/plan/config.json"
    try:
        config = InferenceRunConfig.load(conn, uri)
    except NotFoundError:
        raise NotFoundError(
            f"run {run!r} has no saved plan ({uri})",
            hint="resume names the batch-inference run whose plan step succeeded",
        ) from None
    missing = missing_by_shard(conn, config)
    shards = sorted(shard for shard, tiles in missing.items() if tiles)
    log.info("resuming %s: %d shard(s) still miss tiles", run, len(shards))
    return Plan(uri, config, shards)
