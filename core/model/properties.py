"""Every ``geomlops:*`` STAC property name, each defined once (DESIGN.md §4).

Anything no STAC extension covers is recorded under the one ``geomlops:`` prefix. Writers
and readers of items name a property through these constants, so a typo is an import
error instead of a silently missing field, and this module is the list of what the prefix
holds. Names are grouped by the items that carry them.
"""

from __future__ import annotations

PREFIX = "geomlops:"
"""The prefix of every platform property."""

# --- model version items (collection ``models``, stage and lineage) -----------------------
STAGE = "geomlops:stage"
"""Where a model version is in its life (:class:`geomlops.model.stages.Stage`)."""
PACKAGE = "geomlops:package"
"""The model package name (also on package items)."""
PACKAGE_VERSION = "geomlops:package_version"
"""The package version the model version was trained from (also on package items)."""
PACKAGE_ITEM = "geomlops:package_item"
"""Id of the package's own item in ``models``."""
GIT_COMMIT = "geomlops:git_commit"
"""The source commit of the package (also on package items)."""
GIT_URL = "geomlops:git_url"
"""The git repository the package is cloned from (a URL or a path git can clone; never the
registering machine's working folder). With :data:`GIT_COMMIT` and :data:`PACKAGE_PATH` it is
where training finds the code outside the package's image (also on package items)."""
PACKAGE_PATH = "geomlops:package_path"
"""The package's folder inside :data:`GIT_URL` (POSIX, ``""`` for the repository root)."""
IMAGE = "geomlops:image"
"""The container image the package runs in (also on package items)."""
DATASET = "geomlops:dataset"
"""Training dataset name (also on dataset items)."""
DATASET_VERSION = "geomlops:dataset_version"
"""Training dataset version, ``vN``."""
DATASET_MD5 = "geomlops:dataset_md5"
"""DVC checksum of the training dataset version."""
DATASET_GIT_REV = "geomlops:dataset_git_rev"
"""Git revision of the training dataset version."""
WORKFLOW = "geomlops:workflow"
"""The workflow run that made the item (training, or batch inference on predictions)."""
MLFLOW_MODEL = "geomlops:mlflow_model"
"""The MLflow registered model name (also on package items)."""
MLFLOW_MODEL_VERSION = "geomlops:mlflow_model_version"
"""The MLflow model version number."""
MLFLOW_RUN_ID = "geomlops:mlflow_run_id"
"""The MLflow training run."""
EVALUATE_RUN_ID = "geomlops:evaluate_run_id"
"""The MLflow evaluation run whose metrics gate promotion."""
METRICS = "geomlops:metrics"
"""Held-out evaluation metrics (``val_*``), a copy of the evaluation run's."""
GATES = "geomlops:gates"
"""Evaluation gates promotion checks, e.g. ``{"val_iou_water": {"min": 0.7}}`` (mlm.json)."""
TRAINED_BY = "geomlops:trained_by"
"""The identity that submitted the training run (may not approve it)."""
REGISTERED_BY = "geomlops:registered_by"
"""The identity that registered the version, when not its trainer (may not approve it)."""
APPROVED_BY = "geomlops:approved_by"
"""The approver who put the version in production."""
APPROVED_AT = "geomlops:approved_at"
"""When it was approved (ISO 8601)."""
APPROVAL_REASON = "geomlops:approval_reason"
"""The approver's reason."""
APPROVAL_ACTION = "geomlops:approval_action"
"""The decision that made it production: ``promote`` or ``rollback``."""
REJECTED_BY = "geomlops:rejected_by"
"""The approver who rejected the version."""
REJECTED_AT = "geomlops:rejected_at"
"""When it was rejected (ISO 8601)."""
REJECTION_REASON = "geomlops:rejection_reason"
"""Why it was rejected."""
INPUT_BANDS = "geomlops:input_bands"
"""Band names of every model input, derived on write (CQL2 cannot reach ``mlm:input``)."""

# --- model outputs (on an ``mlm:output`` entry: how the platform post-processes it) --------
THRESHOLD = "geomlops:threshold"
"""A probability or continuous output's threshold: values >= it form a mask whose polygons
and area above threshold the platform publishes (absent: no threshold mask)."""
COLORMAP = "geomlops:colormap"
"""The colour ramp a probability or continuous output is drawn with (default ``viridis``)."""
UNIT = "geomlops:unit"
"""The unit of a continuous output's values, e.g. ``Mg/ha`` (free text, for readers)."""

# --- package items (stage ``registered``) -------------------------------------------------
PACKAGE_DIGEST = "geomlops:package_digest"
"""Checksum of the package's files, so registering the same package twice changes nothing."""
GIT_DIRTY = "geomlops:git_dirty"
"""The package was registered with local edits on top of its commit."""

# --- dataset items (collection ``datasets``) ----------------------------------------------
GIT_REV = "geomlops:git_rev"
"""Git revision of the dataset repository that holds the version."""
GIT_TAG = "geomlops:git_tag"
"""Git tag naming the dataset version."""
REPOSITORY = "geomlops:repository"
"""URL of the dataset's git repository."""
DVC_MD5 = "geomlops:dvc_md5"
"""DVC checksum of the dataset version."""
FILE_COUNT = "geomlops:file_count"
"""Number of files in the dataset version."""
SIZE = "geomlops:size"
"""Total size of the dataset version in bytes."""
GEOREFERENCED_FILES = "geomlops:georeferenced_files"
"""How many of its files are georeferenced rasters (the footprint comes from them)."""

# --- imagery items (collection ``imagery``) -----------------------------------------------
SENSOR = "geomlops:sensor"
"""The sensor profile a scene was recognised as (band names and order)."""

# --- prediction items (collection ``predictions``) ----------------------------------------
MODEL = "geomlops:model"
"""The model name that made the prediction."""
MODEL_VERSION = "geomlops:model_version"
"""The model version that made the prediction."""
MODEL_ITEM = "geomlops:model_item"
"""Id of that model version's item in ``models`` (also a ``derived_from`` link)."""
WORKFLOW_RUNS = "geomlops:workflow_runs"
"""Every workflow run that contributed tiles (a resumed run has several)."""
OUTSIDE_REGION = "geomlops:outside_region"
"""The AOI reached beyond the model's trained region (predictions there are unvalidated)."""
OUTSIDE_FRACTION = "geomlops:outside_fraction"
"""The share of the AOI outside the model's region."""
REQUEST_DATETIME = "geomlops:request_datetime"
"""The datetime range the batch request asked for."""
REQUEST_AOI = "geomlops:request_aoi"
"""Where the batch request's AOI document is (``s3://``): the outputs are clipped to it."""
CLASSES = "geomlops:classes"
"""The classes of the mask: ``[{value, name}]``."""
SCENE = "geomlops:scene"
"""The source scene of a per-scene mask item."""
SCENES = "geomlops:scenes"
"""The source scenes of a run's polygon item."""
STATS = "geomlops:stats"
"""Per-class pixel counts and areas of the item's mask or polygons; for a probability or
continuous output its no-data, cloud and above-threshold areas (the output transformer's
answer carries its zonal statistics under this name)."""

OUTPUT_KIND = "geomlops:output_kind"
"""The kind of the model output a prediction was post-processed as (``class-mask``,
``probability``, ``continuous``, ``chip-class``: :class:`geomlops.model.kinds.OutputKind`)."""
ZONAL = "geomlops:zonal"
"""Zonal statistics of a probability or continuous prediction over the valid pixels of the
AOI: ``mean``, ``min``, ``max``, ``p10``, ``p50``, ``p90``, ``valid_pixels``, and with a
threshold ``threshold``, ``above_threshold_pixels``, ``above_threshold_area_m2`` and
``above_threshold_area_km2`` (written by
``geomlops.transformers.postprocess.zonal_statistics``)."""
PROCESSING = "geomlops:processing"
"""Whether the run's generic processors have run: ``pending`` (published, processors not yet
run), ``complete`` or ``incomplete`` (one failed; see :data:`PROCESSORS`). Absent when the run
asked for none."""
PROCESSORS = "geomlops:processors"
"""The generic processors run on the prediction: ``[{name, version, item, sha256, params,
status, result?, error?}]`` (the result JSON is also an asset)."""

# --- processor items (collection ``processors``) ------------------------------------------
PROCESSOR = "geomlops:processor"
"""The processor's name (every version of it shares it)."""
PROCESSOR_PARAMETERS = "geomlops:processor_parameters"
"""The parameters its script declares: ``{name: {type, default?, description?}}``."""
PROCESSOR_DEFAULTS = "geomlops:processor_defaults"
"""The values given at registration (``--param``), used when a run gives none."""
PROCESSOR_SHA256 = "geomlops:processor_sha256"
"""Hex sha256 of the script: a run verifies the script it downloads against it."""

# --- who may write what (enforced on the STAC API's `models` collection) --------------------
DECISION_PROPERTIES = (
    STAGE,
    APPROVED_BY,
    APPROVED_AT,
    APPROVAL_REASON,
    APPROVAL_ACTION,
    REJECTED_BY,
    REJECTED_AT,
    REJECTION_REASON,
)
"""What a decision (promote, reject, rollback) changes: only the governance code writes these.

A new item may carry a stage only as registration (``registered``) or training
(``candidate``) writes it, and none of the others."""
RECORD_PROPERTIES = (
    TRAINED_BY,
    REGISTERED_BY,
    GATES,
    METRICS,
    EVALUATE_RUN_ID,
    MLFLOW_RUN_ID,
    MLFLOW_MODEL,
    MLFLOW_MODEL_VERSION,
    PACKAGE,
    PACKAGE_VERSION,
    PACKAGE_ITEM,
)
"""What promotion's checks rest on: written once, when the item is created, never changed
(except by an administrator), so nobody can move a version past its gate by editing it."""
