"""The saved plan of one batch-inference run, and where each of its objects lives in S3.

``plan`` resolves the request once (model version, scenes, tiles, shards) and saves it in
the run's folder; every later pod reads only these documents, so a shard retried or resumed
days later works on exactly the plan the run started with. ``extra="forbid"`` and
``schema_version`` make a plan written by another version of the platform fail loudly.

Layout of a run's folder ``s3://<predictions bucket>/<run>/`` (DESIGN.md §7)::

    plan/config.json          this module's InferenceRunConfig
    plan/shard-0003.json      the tiles of shard 3 (ShardPlan)
    tiles/<tile>.tif          one tile's class mask, or float raster for a probability or
                              continuous output (COG), written by its shard (with a
                              pipeline, the mask model's masked pixels are no data)
    tiles/<tile>.json         the tile's record: written last, so it means "tile done"
    shards/shard-0003.failed.json   tiles a shard could not do, and why
    <scene>.tif               the per-scene mosaic (COG), written by publish
    <run>.geojson             the run's polygons, written by publish
    processors/<name>/result.json   a generic processor's JSON result (and its files beside)
    processing.json           how the run's processors went (the `process` step)
    report.json               the run's final task counts (exit handler)

Every object becomes visible only once wholly written (S3's PUT and multipart completion
are atomic), so a reader never sees half of one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from geomlops import objects
from geomlops.connections import Connections
from geomlops.model.io import ModelIO, OutputClass
from geomlops.model.kinds import DEFAULT_COLORMAP, OutputKind, OutputSpec
from geomlops.model.pipeline import MaskRule
from geomlops.model.runtimes import TORCH_EXPORT

CONFIG = "plan/config.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassPin(_Strict):
    """One class of the model's mask."""

    value: int
    name: str


class OutputPin(_Strict):
    """The kind of the model's output and its post-processing options (its ``mlm:output``)."""

    kind: OutputKind
    threshold: float | None = None
    colormap: str = DEFAULT_COLORMAP
    unit: str | None = None


class ModelPin(_Strict):
    """The model version the run uses, and how to feed it (from its MLM item)."""

    name: str
    version: str
    item_id: str = Field(description="Its item in the `models` collection.")
    model_uri: str = Field(description="What MLflow loads: models:/NAME/VERSION.")
    stage: str
    image: str = Field(description="Image the predict pods run in (the package's).")
    bands: list[str]
    mean: list[float]
    stddev: list[float]
    patch_size: int = Field(gt=0)
    classes: list[ClassPin]
    nodata: float | None = None
    artifact_uri: str = Field(
        default="", description="The version's MLflow model folder (s3:// or mlflow-artifacts:/)."
    )
    runtime: str = Field(
        default=TORCH_EXPORT,
        description="How it runs: its model asset's mlm:artifact_type (geomlops.model.runtimes).",
    )
    output: OutputPin | None = Field(
        default=None,
        description="What the output is; None: a class mask (plans from before output kinds).",
    )

    @property
    def spec(self) -> OutputSpec:
        """The output's kind and post-processing options."""
        classes = tuple({"value": c.value, "name": c.name} for c in self.classes)
        if self.output is None:
            return OutputSpec(OutputKind.CLASS_MASK, classes=classes)
        return OutputSpec(
            self.output.kind,
            classes=classes,
            threshold=self.output.threshold,
            colormap=self.output.colormap,
            unit=self.output.unit,
        )

    @property
    def kind(self) -> OutputKind:
        """The kind of the model's output."""
        return self.spec.kind

    def io(self) -> ModelIO:
        """The model's input/output description, as :mod:`geomlops.ml` uses it."""
        return ModelIO(
            bands=tuple(self.bands),
            mean=tuple(self.mean),
            stddev=tuple(self.stddev),
            patch_size=self.patch_size,
            classes=tuple(OutputClass(c.value, c.name) for c in self.classes),
            nodata=self.nodata,
            output=self.spec,
        )


class MaskPin(_Strict):
    """The model version whose output masks the primary's (a pipeline's ``mask``)."""

    model: ModelPin
    output: str = Field(description="Its mlm:output the rule reads.")
    channel: int = Field(ge=0)
    threshold: float
    drop: Literal["above", "below"]

    def rule(self) -> MaskRule:
        """The rule the shard worker applies to the mask model's output."""
        return MaskRule(self.output, self.channel, self.threshold, self.drop)


class CloudBand(_Strict):
    """A band of the scene that says which pixels are cloud (see :mod:`.masks`)."""

    index: int = Field(ge=1, description="1-based band index in the scene's file.")
    kind: str = Field(description="How to read it: scl, qa60 or fmask.")


class ScenePin(_Strict):
    """One source scene as the planner found it."""

    item_id: str
    href: str = Field(description="s3:// or local path of its COG.")
    datetime: str
    crs: str = Field(description="CRS as WKT (or EPSG:n).")
    transform: list[float] = Field(min_length=6, max_length=6)
    width: int
    height: int
    band_indexes: list[int] = Field(description="1-based file band of each model band.")
    mask_band_indexes: list[int] | None = Field(
        default=None, description="1-based file band of each mask model band (a pipeline)."
    )
    nodata: float | None = None
    cloud: CloudBand | None = None


class Tile(_Strict):
    """One unit of work: a window of a scene (its core; a halo is read around it)."""

    id: str
    scene: str = Field(description="Item id of its scene.")
    row: int = Field(ge=0, description="Pixel row of the core window's top.")
    col: int = Field(ge=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class RequestPin(_Strict):
    """What was asked for."""

    aoi: dict = Field(description="The AOI as one GeoJSON geometry in EPSG:4326.")
    aoi_uri: str = Field(description="Where the request's AOI document is (s3://).")
    datetime: str = Field(description="START/END (RFC 3339 interval, `..` open).")
    allow_outside_region: bool
    outside_fraction: float = Field(
        ge=0, le=1, description="Share of the AOI's area outside the model's footprint."
    )


class ProcessorPin(_Strict):
    """A generic processor the run applies after publishing, pinned when it was planned."""

    name: str
    version: int = Field(ge=1)
    item_id: str = Field(description="Its version's item in the `processors` collection.")
    script_uri: str = Field(description="s3:// URI of the script.")
    sha256: str = Field(description="The catalogued sha256 the script is verified against.")
    params: dict[str, Any] = Field(description="Every declared parameter's resolved value.")


class InferenceRunConfig(_Strict):
    """Everything a ``geomlops-batch-inference`` run works on, resolved once."""

    schema_version: Literal[1] = 1
    workflow: str = Field(description="Name of the workflow run that planned it.")
    run_uri: str = Field(description="s3:// folder holding the run's plan and outputs.")
    model: ModelPin
    mask: MaskPin | None = Field(
        default=None, description="A pipeline's mask model: masked pixels become no data."
    )
    pipeline: dict | None = Field(default=None, description="The pipeline spec, as given.")
    request: RequestPin
    scenes: list[ScenePin]
    skipped_scenes: dict[str, str] = Field(
        default_factory=dict, description="Scenes found but not used, with why."
    )
    tile_size: int = Field(gt=0)
    overlap: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    tile_retries: int = Field(ge=0)
    device: str
    tile_count: int = Field(ge=1)
    shard_count: int = Field(ge=1)
    vector_skip_values: list[int] = Field(default_factory=list)
    min_area_m2: float = 0.0
    simplify_tolerance_m: float = 0.0
    processors: list[ProcessorPin] = Field(
        default_factory=list, description="Generic processors run after publishing, in order."
    )

    @property
    def outside_region(self) -> bool:
        """Outputs are flagged: the AOI reaches beyond where the model was evaluated."""
        return self.request.allow_outside_region and self.request.outside_fraction > 0

    def uri(self, name: str) -> str:
        """URI of a document or object in the run's folder."""
        return f"{self.run_uri.rstrip('/')}/{name}"

    def shard_uri(self, shard: int) -> str:
        return self.uri(f"plan/shard-{shard:04d}.json")

    def failed_uri(self, shard: int) -> str:
        return self.uri(f"shards/shard-{shard:04d}.failed.json")

    def tile_mask_uri(self, tile_id: str) -> str:
        return self.uri(f"tiles/{tile_id}.tif")

    def tile_record_uri(self, tile_id: str) -> str:
        return self.uri(f"tiles/{tile_id}.json")

    def scene(self, item_id: str) -> ScenePin:
        return next(s for s in self.scenes if s.item_id == item_id)

    @classmethod
    def load(cls, conn: Connections, uri: str) -> InferenceRunConfig:
        return cls.model_validate(objects.read_json(conn, uri))

    def save(self, conn: Connections) -> str:
        uri = self.uri(CONFIG)
        objects.write_json(conn, uri, self.model_dump(mode="json"))
        return uri


class ShardPlan(_Strict):
    """The tiles of one shard."""

    schema_version: Literal[1] = 1
    shard: int = Field(ge=0)
    tiles: list[Tile]

    @classmethod
    def load(cls, conn: Connections, uri: str) -> ShardPlan:
        return cls.model_validate(objects.read_json(conn, uri))


class TileRecord(_Strict):
    """What a shard wrote for one finished tile (its presence means the tile is done)."""

    schema_version: Literal[1] = 1
    tile: str
    scene: str
    shard: int
    pod: str = Field(description="Pod (or process) that predicted it.")
    pixels: dict[str, int] = Field(description="Pixel count per class name.")
    nodata_pixels: int
    cloud_pixels: int
    masked_pixels: int = Field(default=0, description="Pixels the mask model masked.")
    seconds: float
