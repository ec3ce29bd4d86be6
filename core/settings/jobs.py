"""Settings of the platform's work: workflows, datasets, training, serving, inference."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from geomlops import __version__
from geomlops.settings.base import config, repo_dir, shared_data
from geomlops.settings.services import S3Settings


class WorkflowSettings(BaseSettings):
    """The local Argo executor and the Argo schema used to validate manifests."""

    model_config = config("GEOMLOPS_WORKFLOWS_")

    parallelism: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Most pods a local run executes at once (a manifest's own `parallelism` "
        "can only lower it); default: the number of CPUs.",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where local runs keep their state; unset means `$GEOMLOPS_HOME/workflows`.",
    )
    argo_schema_dir: Path | None = Field(
        default_factory=lambda: shared_data("schemas/argo-workflows"),
        description="Directory holding Argo's `schema-v<version>.json` files; unset means "
        "`../shared/data/schemas/argo-workflows` next to the repository when it exists.",
    )
    path_map: dict[str, str] = Field(
        default_factory=dict,
        description="Container path prefix -> local directory for local runs (JSON), e.g. "
        '`{"/tmp/outputs": "{pod_dir}/outputs"}`; `{pod_dir}`/`{run_dir}` give each pod/run '
        "its own directory.",
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Kubernetes secrets for local runs as files `<secret>/<key>`; unset means "
        "`<state dir>/secrets`.",
    )
    poll_interval: float = Field(
        default=0.25, gt=0, description="Seconds between checks for resume/stop requests."
    )
    kill_grace: float = Field(
        default=5.0, ge=0, description="Seconds between SIGTERM and SIGKILL when stopping a pod."
    )


class DatasetSettings(BaseSettings):
    """The git+DVC repository that versions training datasets (`geomlops dataset ...`)."""

    model_config = config("GEOMLOPS_DATASETS_")

    repo: Path | None = Field(
        default=None,
        description="Working copy of the dataset repository; unset means "
        "`$GEOMLOPS_HOME/datasets/repo` (created on first `geomlops dataset add`).",
    )
    git_remote: str | None = Field(
        default=None,
        description="Git remote the dataset repository pushes its commits and tags to, and that "
        "workflow pods read it from (production); unset means the local repository only.",
    )
    remote_prefix: str = Field(
        default="datasets",
        description="Key prefix of the DVC remote inside the `dvc` bucket.",
    )


class ArgoSettings(BaseSettings):
    """The Argo Server API every workflow command talks to (a cluster's, or the local one)."""

    model_config = config("GEOMLOPS_ARGO_")

    server: str | None = Field(
        default=None,
        description="Argo server URL (`GEOMLOPS_ARGO_SERVER`), e.g. `https://argo.example.org`; "
        "unset means the local stack's `argo` service (the local executor serving the same API).",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the Argo server (`GEOMLOPS_ARGO_TOKEN`); unset means the "
        "platform's API key (`GEOMLOPS_API_KEY`, or the local administrator key), which the "
        "local `argo` service accepts as the catalog does.",
    )
    namespace: str = Field(default="geomlops", description="Namespace workflows run in.")
    verify_ssl: bool = Field(default=True, description="Verify the server's TLS certificate.")
    port: int = Field(
        default=0, ge=0, le=65535, description="Local `argo` service port; 0 picks a free one."
    )
    poll_interval: float | None = Field(
        default=None,
        gt=0,
        description="Seconds between status checks while waiting on a run; unset means 5 for "
        "a configured server and 0.5 for the local one.",
    )

    @property
    def poll_seconds(self) -> float:
        """The status-check interval in effect (a remote server is polled less often)."""
        if self.poll_interval is not None:
            return self.poll_interval
        return 5.0 if self.server else 0.5


class TrainingSettings(BaseSettings):
    """How training pods are scheduled on a cluster (recorded, without effect, locally)."""

    model_config = config("GEOMLOPS_TRAIN_")

    gpus: int = Field(
        default=1, ge=0, description="GPUs the train and evaluate pods request; 0 = CPU only."
    )
    gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Extended resource name of a GPU."
    )
    gpu_tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ],
        description="Tolerations of GPU pods (JSON list of Kubernetes tolerations).",
    )
    gpu_node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of GPU pods (JSON object)."
    )
    image_dir: str = Field(
        default="/opt/package",
        description="Where a package image holds the package (its Dockerfile WORKDIR); a "
        "step that does not find the package there checks out the catalog's recorded git "
        "source at the recorded commit instead (under GEOMLOPS_HOME/packages).",
    )
    env_cache: Path = Field(
        default=Path("~/.cache/geomlops/package-envs"),
        description="Where the local executor keeps each package's own Python environment, "
        "built with uv from the package's requirements.txt and named by their hash; a cache "
        "(safe to delete), shared by every stack home on this machine.",
    )
    platform_image: str = Field(
        default="ghcr.io/geomlops/geomlops:0.1.0",
        description="Image of the platform's own steps (resolve, materialise, register).",
    )
    platform_secret: str = Field(
        default="geomlops-platform",
        description="Kubernetes Secret whose keys give workflow pods the service URLs and "
        "credentials (each optional: a local run inherits them from the executor).",
    )
    service_account: str = Field(
        default="geomlops-workflow",
        description="Kubernetes ServiceAccount the platform's workflows run as (the Helm "
        "chart's, bound to Argo's minimal Role); never the namespace's `default` account.",
    )

    @field_validator("env_cache")
    @classmethod
    def _absolute_env_cache(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class RegistrationSettings(BaseSettings):
    """Limits and defaults of `geomlops package validate|register`."""

    model_config = config("GEOMLOPS_REGISTRATION_")

    max_file_bytes: int = Field(
        default=10 * 1024**2,
        gt=0,
        description="Largest file a model package may hold (weights and data do not belong "
        "in a package: training writes weights to MLflow, data comes from the registry).",
    )
    max_package_bytes: int = Field(
        default=50 * 1024**2, gt=0, description="Largest total size of a model package."
    )
    max_mlm_bytes: int = Field(
        default=1024**2,
        gt=0,
        description="Largest mlm.json: it becomes the model item every search returns.",
    )
    image_repository: str = Field(
        default="ghcr.io/geomlops",
        description="Registry prefix of package images; without --image, registration records "
        "`<image_repository>/<package>:<git sha>`, the tag CI pushes.",
    )
    base_image: str = Field(
        default=f"ghcr.io/geomlops/geomlops-ml-cuda:{__version__}",
        description="The published base image of model packages (Python 3.11, uv and the "
        "package SDK; docker/ml-base/Dockerfile, pushed by the release workflow): the image "
        "`geomlops package new` writes in a package's Dockerfile `FROM` line.",
    )


class ServingSettings(BaseSettings):
    """Online inference: the Seldon graph, its images and resources, and input limits."""

    model_config = config("GEOMLOPS_SERVING_")

    model_image: str = Field(
        default="ghcr.io/geomlops/serving-model:0.1.0",
        description="Image of the model component (built from serving/Dockerfile).",
    )
    transformer_image: str = Field(
        default="ghcr.io/geomlops/serving-raster-to-vector:0.1.0",
        description="Image of the raster-to-vector transformer (transformers/Dockerfile).",
    )
    namespace: str = Field(default="geomlops", description="Namespace of SeldonDeployments.")
    secret: str = Field(
        default="geomlops-platform",
        description="Kubernetes Secret (by reference, envFrom) holding the MLflow and S3 URLs "
        "and credentials the model component reads as GEOMLOPS_* variables.",
    )
    replicas: int = Field(default=1, ge=1, description="Predictor replicas.")
    gpus: int = Field(
        default=0,
        ge=0,
        description="GPUs the model component requests (0 = CPU only); the resource name "
        "and tolerations are the training settings' (GEOMLOPS_TRAIN_GPU_*).",
    )
    model_cpu: str = Field(default="1", description="CPU request of the model component.")
    model_memory: str = Field(default="2Gi", description="Memory request and limit (model).")
    transformer_cpu: str = Field(default="500m", description="CPU request (transformer).")
    transformer_memory: str = Field(default="1Gi", description="Memory request and limit.")
    allowed_s3_buckets: list[str] | None = Field(
        default=None,
        description="Buckets of the platform's object store a request may point to by "
        "`s3://bucket/key` (JSON list); unset means the imagery bucket only.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (`host` or `host:port`) a request may point to by `https://` URL "
        "(JSON list); empty means none. No other scheme, host or redirect is followed.",
    )
    max_input_bytes: int = Field(
        default=64 * 1024**2,
        gt=0,
        description="Largest GeoTIFF accepted, inline (binData) or by reference.",
    )
    max_input_pixels: int = Field(
        default=4096 * 4096, gt=0, description="Largest input raster (height x width)."
    )
    max_decoded_bytes: int = Field(
        default=256 * 1024**2,
        gt=0,
        description="Largest input raster once decoded (width x height x bands x sample "
        "size): a few compressed bytes can hold many bands of one value (a decompression bomb).",
    )
    overlap: int = Field(default=16, ge=0, description="Pixels shared by neighbouring tiles.")
    batch_size: int = Field(default=8, ge=1, description="Tiles per forward pass.")
    min_area_m2: float = Field(
        default=0.0, ge=0, description="Polygons and holes smaller than this are dropped."
    )
    simplify_tolerance_m: float = Field(
        default=0.0, ge=0, description="Topology-preserving simplification tolerance."
    )
    skip_values: str = Field(
        default="",
        description="Comma-separated class values that get no polygons (e.g. `0` for a "
        "background class).",
    )
    ready_timeout: float = Field(
        default=120.0, gt=0, description="Seconds `geomlops serve` waits for its components."
    )
    follow_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often a model component serving production (no version pinned) "
        "asks the governed record which version that is; after a promotion or rollback it "
        "loads the new version and swaps it in, so it serves it within this time plus a load.",
    )
    venv_bin: Path | None = Field(
        default_factory=lambda: repo_dir(".venv-serving/bin"),
        description="bin/ folder of the serving environment (seldon-core 1.17.1) that "
        "`geomlops serve` runs the components from; unset means this checkout's "
        "`.venv-serving/bin` when it exists (`make install` builds it).",
    )
    model_python: Path | None = Field(
        default=None,
        description="Interpreter that runs a model of the `mlflow.pyfunc` runtime (one that "
        "needs its package's environment, e.g. cloud-s2). Unset: this process's interpreter "
        "when it holds the model's requirements (the package's image, on a cluster), else "
        "the package environment under GEOMLOPS_TRAIN_ENV_CACHE, built when missing. "
        "`geomlops serve` sets it for a model component whose environment it prepared.",
    )
    seldon_schema: Path | None = Field(
        default_factory=lambda: shared_data(
            "schemas/seldon-core-v1/seldondeployment-v1.openAPIV3Schema.json"
        ),
        description="SeldonDeployment openAPIV3Schema (JSON) that generated manifests are "
        "validated against; unset means the copy in ../shared/data when it exists.",
    )

    def s3_buckets(self, s3: S3Settings) -> list[str]:
        """Buckets a request may reference: the configured list, else the imagery bucket."""
        return (
            self.allowed_s3_buckets if self.allowed_s3_buckets is not None else [s3.bucket_imagery]
        )


class InferenceSettings(BaseSettings):
    """Batch inference (`geomlops infer`): how work is cut, bounded, retried and published."""

    model_config = config("GEOMLOPS_INFER_")

    stac_url: str | None = Field(
        default=None,
        description="STAC API the planner searches for imagery; unset means the platform's "
        "own catalog (the same code path either way).",
    )
    imagery_collection: str = Field(
        default="imagery", description="Collection of source scenes the planner searches."
    )
    tile_patches: int = Field(
        default=8,
        ge=1,
        description="Side of one planned tile in model patches (tile = patches x the model "
        "input size, e.g. 8 x 64 = 512 px): the unit of work, retry and output.",
    )
    overlap: int = Field(
        default=16,
        ge=0,
        description="Pixels shared by neighbouring model patches and read around each tile, "
        "blended with weights that fall towards the edges (capped at half a patch).",
    )
    max_shards: int = Field(
        default=16,
        ge=1,
        description="Most shards (pods) one run fans out to: one pod or Argo node per tile "
        "breaks Argo at scale (its workflow object hits etcd's size limit).",
    )
    min_tiles_per_shard: int = Field(
        default=4, ge=1, description="Fewer tiles than this per shard are not worth a pod."
    )
    batch_size: int = Field(default=16, ge=1, description="Model patches per forward pass.")
    strip_tiles: int = Field(
        default=4,
        ge=1,
        description="Width, in tiles, of the strips a scene's tiles are visited in (down one "
        "strip, then the next): neighbouring tiles share the source blocks under their halos, "
        "and a narrow strip keeps those blocks in GDAL's cache whatever the scene's width.",
    )
    gdal_cache_mb: int = Field(
        default=256,
        ge=16,
        description="GDAL's block cache for reading source scenes, MiB. It must hold the "
        "decoded blocks under three rows of a strip's tiles and their halos: (strip_tiles + 2) "
        "x 4 blocks, 163 MB for 13 int16 bands in 512 px blocks; smaller, blocks are decoded "
        "again and again.",
    )
    tile_retries: int = Field(
        default=2,
        ge=0,
        description="Times a tile is retried inside its shard before the shard fails.",
    )
    shard_retries: int = Field(
        default=1, ge=0, description="Times Argo re-runs a failed shard pod (done tiles are kept)."
    )
    max_outside_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of the AOI's area that may lie outside the model's footprint (its "
        "MLM item geometry) before the request is refused without --allow-outside-region.",
    )
    allowed_asset_hrefs: list[str] = Field(
        default_factory=list,
        description="URL prefixes (e.g. `https://cogs.example.org/`, JSON list) of imagery "
        "assets the planner may read besides the imagery bucket; anything else (loopback "
        "services, local paths, other buckets) is refused.",
    )
    max_aoi_vertices: int = Field(
        default=10_000, ge=4, description="Most vertices an AOI may have (all its rings)."
    )
    item_geometry_vertices: int = Field(
        default=1_000,
        ge=4,
        description="Prediction items store the covered area simplified to at most this many "
        "vertices (the exact AOI stays in S3): a large geometry slows every search.",
    )
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:N.")
    gpus: int = Field(
        default=1, ge=0, description="GPUs each predict pod requests on a cluster; 0 = CPU only."
    )
    min_area_m2: float = Field(
        default=0.0, ge=0, description="Polygons and holes smaller than this are not published."
    )
    simplify_tolerance_m: float = Field(
        default=0.0, ge=0, description="Topology-preserving simplification of the polygons."
    )
    skip_values: list[int] = Field(
        default_factory=lambda: [0],
        description="Class values that get no polygons in the run's GeoJSON (JSON list); "
        "default: class 0, the background class of the platform's models.",
    )
