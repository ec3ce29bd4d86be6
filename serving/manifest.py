"""The SeldonDeployment of a model: output transformer ``raster-to-vector`` -> model.

A pipeline (:mod:`geomlops.model.pipeline`) renders as MODEL(mask) -> MODEL(primary) ->
the output transformer: the executor sends the request to the mask model, its answer (the
request and the masked pixels, :mod:`geomlops.serving.gate`) to the primary model, and that
answer to ``/transform-output``.

One function builds the manifest and both ways of running use it: ``geomlops serve
manifest`` prints it for a cluster, and ``geomlops serve`` starts the same graph locally
(:mod:`geomlops.serving.local` reads its nodes, component classes and parameters from it).

What the manifest holds and why:

- the graph, with Seldon's node types: the executor sends a request to the model and then
  the model's answer to the transformer's ``/transform-output``;
- each container's image and the wrapper's ``MODEL_NAME``/``SERVICE_TYPE`` (which Python
  class to run), so a generic image could serve either;
- resources, with a GPU only when the settings ask for one (the model runs on CPU too);
- credentials only *by reference* (``envFrom.secretRef``): the Secret's keys become the
  ``GEOMLOPS_*`` variables the settings read. No secret value is ever written here.

The result is validated against the SeldonDeployment CRD's own schema (seldon-core 1.17.1,
``../shared/data/schemas/seldon-core-v1/``) before anyone sees it.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from geomlops.errors import ConfigError, ValidationFailed
from geomlops.model.pipeline import PipelineSpec
from geomlops.settings import Settings, get_settings

API_VERSION = "machinelearning.seldon.io/v1"
MODEL_NODE = "model"
MASK_NODE = "mask"
MASK_CLASS = "geomlops.serving.seldon_model.MaskModel"
TRANSFORMER_NODE = "raster-to-vector"
MODEL_CLASS = "geomlops.serving.seldon_model.SegmentationModel"
TRANSFORMER_CLASS = "geomlops.transformers.seldon_raster_to_vector.RasterToVector"
WRAPPER_SERVICE_TYPES = {"MODEL": "MODEL", "OUTPUT_TRANSFORMER": "TRANSFORMER"}
"""Graph node type -> the Python wrapper's ``--service-type`` (it has no OUTPUT_TRANSFORMER:
input and output transformers are the same microservice, the executor picks the endpoint)."""
REST_TIMEOUT_MS = 120_000
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _parameter(name: str, value: object, kind: str) -> dict[str, str]:
    text = str(value).lower() if kind == "BOOL" else str(value)
    return {"name": name, "value": text, "type": kind}


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _resources(cpu: str, memory: str, gpus: int = 0, gpu_resource: str = "") -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    limits: dict[str, Any] = {"memory": memory}
    if gpus:
        requests[gpu_resource] = str(gpus)
        limits[gpu_resource] = str(gpus)
    return {"requests": requests, "limits": limits}


def deployment_name(model: str) -> str:
    """The SeldonDeployment's name for ``model`` (a Kubernetes DNS label)."""
    name = model.lower().replace("_", "-")
    if not _NAME.match(name) or len(name) > 63:
        raise ValidationFailed(
            f"model name {model!r} cannot name a SeldonDeployment",
            hint="model names are lowercase letters, digits and '-' (at most 63)",
        )
    return name


def seldon_deployment(
    model: str, *, version: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """The SeldonDeployment serving ``model`` (its production version unless ``version``)."""
    settings = settings or get_settings()
    return _deployment(deployment_name(model), model, [_model_node(model, version)], settings)


def pipeline_deployment(spec: PipelineSpec, *, settings: Settings | None = None) -> dict[str, Any]:
    """The SeldonDeployment of a pipeline: MODEL(mask) -> MODEL(primary) -> transformer.

    Each model node names its model and, when the spec pins one, its version; the mask
    node also carries the spec's rule fields, which the component applies to the version
    it resolves (:func:`geomlops.model.pipeline.mask_rule`, as batch inference does).
    """
    settings = settings or get_settings()
    mask = spec.mask
    mask_node = _model_node(mask.model, mask.version, name=MASK_NODE)
    mask_node["parameters"] += [
        _parameter(key, value, kind)
        for key, value, kind in (
            ("output", mask.output, "STRING"),
            ("threshold", mask.threshold, "FLOAT"),
            ("drop", mask.drop, "STRING"),
        )
        if value is not None
    ]
    nodes = [mask_node, _model_node(spec.model, spec.version)]
    labels = {"geomlops/mask-model": deployment_name(mask.model)}
    return _deployment(deployment_name(spec.pipeline), spec.model, nodes, settings, labels)


def _model_node(model: str, version: str | None, name: str = MODEL_NODE) -> dict[str, Any]:
    parameters = [_parameter("model_name", model, "STRING")]
    if version is not None:
        parameters.append(_parameter("model_version", version, "STRING"))
    return {
        "name": name,
        "type": "MODEL",
        "endpoint": {"type": "REST"},
        "parameters": parameters,
        "children": [],
    }


def _deployment(
    name: str,
    model: str,
    nodes: list[dict[str, Any]],
    settings: Settings,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of a graph of MODEL ``nodes`` under the raster-to-vector transformer.

    Each node is the next one's parent; each gets a container of its name.
    """
    serving, training = settings.serving, settings.training
    transformer_parameters = [
        _parameter("min_area_m2", serving.min_area_m2, "FLOAT"),
        _parameter("simplify_tolerance_m", serving.simplify_tolerance_m, "FLOAT"),
        _parameter("skip_values", serving.skip_values, "STRING"),
    ]
    secret_ref = [{"secretRef": {"name": serving.secret}}]
    containers: list[dict[str, Any]] = [
        {
            "name": node["name"],
            "image": serving.model_image,
            "env": [
                _env("MODEL_NAME", MASK_CLASS if node["name"] == MASK_NODE else MODEL_CLASS),
                _env("SERVICE_TYPE", WRAPPER_SERVICE_TYPES["MODEL"]),
            ],
            "envFrom": secret_ref,
            "resources": _resources(
                serving.model_cpu, serving.model_memory, serving.gpus, training.gpu_resource
            ),
        }
        for node in nodes
    ]
    containers.append(
        {
            "name": TRANSFORMER_NODE,
            "image": serving.transformer_image,
            "env": [
                _env("MODEL_NAME", TRANSFORMER_CLASS),
                _env("SERVICE_TYPE", WRAPPER_SERVICE_TYPES["OUTPUT_TRANSFORMER"]),
            ],
            "resources": _resources(serving.transformer_cpu, serving.transformer_memory),
        }
    )
    pod_spec: dict[str, Any] = {"containers": containers}
    if serving.gpus:
        pod_spec["tolerations"] = training.gpu_tolerations
        if training.gpu_node_selector:
            pod_spec["nodeSelector"] = training.gpu_node_selector
    for parent, child in itertools.pairwise(nodes):
        parent["children"] = [child]
    graph = {
        "name": TRANSFORMER_NODE,
        "type": "OUTPUT_TRANSFORMER",
        "endpoint": {"type": "REST"},
        "parameters": transformer_parameters,
        "children": [nodes[0]],
    }
    labels = {
        "app.kubernetes.io/part-of": "geomlops",
        "geomlops/model": deployment_name(model),
        **(extra_labels or {}),
    }
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "SeldonDeployment",
        "metadata": {"name": name, "namespace": serving.namespace, "labels": labels},
        "spec": {
            "name": name,
            "protocol": "seldon",
            # The executor's default REST timeout (5 s) is shorter than a large scene takes.
            "annotations": {"seldon.io/rest-timeout": str(REST_TIMEOUT_MS)},
            "predictors": [
                {
                    "name": "default",
                    "replicas": serving.replicas,
                    "labels": dict(labels),
                    "componentSpecs": [{"spec": pod_spec}],
                    "graph": graph,
                }
            ],
        },
    }
    validate_manifest(manifest, settings)
    return manifest


@lru_cache(maxsize=4)
def _schema(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_problems(manifest: dict[str, Any], settings: Settings | None = None) -> list[str]:
    """Every place ``manifest`` breaks the SeldonDeployment CRD schema (empty when valid)."""
    from jsonschema import Draft7Validator

    settings = settings or get_settings()
    path = settings.serving.seldon_schema
    if path is None or not path.is_file():
        raise ConfigError(
            f"no SeldonDeployment schema at {path}",
            hint="set GEOMLOPS_SERVING_SELDON_SCHEMA to seldondeployment-v1.openAPIV3Schema.json",
        )
    validator = Draft7Validator(_schema(path))
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    ]
    problems += _graph_problems(manifest)
    return problems


def _graph_problems(manifest: dict[str, Any]) -> list[str]:
    """What the schema cannot say: every graph node has a container of its name."""
    problems = []
    for index, predictor in enumerate(manifest.get("spec", {}).get("predictors", [])):
        containers = {
            c.get("name")
            for component in predictor.get("componentSpecs") or []
            for c in (component.get("spec") or {}).get("containers", [])
        }
        for node in graph_nodes(predictor.get("graph") or {}):
            # A prepackaged server (``implementation: SKLEARN_SERVER``…) brings its own.
            if node.get("name") not in containers and not node.get("implementation"):
                problems.append(
                    f"spec.predictors.{index}.graph: node {node.get('name')!r} has no container "
                    "of that name in componentSpecs"
                )
    return problems


def graph_nodes(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of a graph, parents before children."""
    nodes = [graph]
    for child in graph.get("children") or []:
        nodes += graph_nodes(child)
    return nodes


def validate_manifest(manifest: dict[str, Any], settings: Settings | None = None) -> None:
    """Raise ValidationFailed listing every schema problem of ``manifest``."""
    problems = schema_problems(manifest, settings)
    if problems:
        raise ValidationFailed("the SeldonDeployment does not match its CRD schema", problems)
