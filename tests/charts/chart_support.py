"""Render charts/geomlops with Helm's own engine and map its values to the platform settings.

Rendering goes through `helm-python-sdk` (Helm's Go SDK: the same engine and the same
values.schema.json check as `helm install`, without a helm binary or a cluster).
:func:`settings_for` is the one place a chart value is tied to a settings field: the tests
that compare the chart with `geomlops workflows render` and `geomlops serve manifest`
read the settings from here.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import helm_python
import yaml

from geomlops.settings import (
    InferenceSettings,
    S3Settings,
    ServingSettings,
    Settings,
    TrainingSettings,
    WorkflowSettings,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "geomlops"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
RELEASE = "geomlops"
NAMESPACE = "geomlops"
CUSTOM_KINDS = {"WorkflowTemplate", "SeldonDeployment"}


def example(name: str) -> dict[str, Any]:
    """The values of ``examples/<name>.yaml``."""
    return yaml.safe_load((CHART / "examples" / f"{name}.yaml").read_text()) or {}


def chart_defaults(chart: Path = CHART) -> dict[str, Any]:
    return yaml.safe_load((chart / "values.yaml").read_text())


def merged(values: dict[str, Any], chart: Path = CHART) -> dict[str, Any]:
    """``values`` over the chart's defaults, as Helm merges them (maps deep, the rest replaced)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for key, value in over.items():
                out[key] = merge(base.get(key), value) if key in base else value
            return out
        return copy.deepcopy(over)

    return merge(chart_defaults(chart), values)


def render(
    values: dict[str, Any] | None = None, chart: Path = CHART, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values``, each with its template in ``_source``."""
    rendered = helm_python.Chart.load(str(chart)).render(
        values or {}, name=RELEASE, namespace=namespace, is_install=True
    )
    objects = []
    for source, text in sorted(rendered.items()):
        if not source.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for document in yaml.safe_load_all(text):
            if document:
                document["_source"] = source
                objects.append(document)
    return objects


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as Kubernetes receives it (without the test's bookkeeping)."""
    return {k: v for k, v in obj.items() if k != "_source"}


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A rendered Secret's keys and values (``data`` decoded, ``stringData`` as is)."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (Deployment, StatefulSet, Job), else None."""
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def settings_for(values: dict[str, Any], namespace: str = NAMESPACE) -> Settings:
    """The settings ``geomlops workflows render``/``serve manifest`` take for these values.

    Built from defaults only (model_construct), so the test run's environment cannot leak
    in; each line names the chart value a settings field follows.
    """
    v = merged(values)
    gpu, serving = v["gpu"], v["serving"]
    training = TrainingSettings.model_construct(
        platform_image=f"{v['image']['repository']}:{v['image']['tag']}",
        platform_secret=v["platformSecret"]["name"],
        service_account=v["workflows"]["serviceAccount"]["name"],
        gpus=v["workflows"]["training"]["gpus"],
        gpu_resource=gpu["resource"],
        gpu_tolerations=gpu["tolerations"],
        gpu_node_selector=gpu["nodeSelector"],
    )
    return Settings.model_construct(
        s3=S3Settings.model_construct(bucket_mlflow=v["objectStore"]["buckets"]["mlflow"]),
        training=training,
        inference=InferenceSettings.model_construct(gpus=v["workflows"]["inference"]["gpus"]),
        serving=ServingSettings.model_construct(
            model_image=serving["modelImage"],
            transformer_image=serving["transformerImage"],
            namespace=namespace,
            secret=v["platformSecret"]["name"],
            replicas=serving["replicas"],
            gpus=serving["gpus"],
            model_cpu=str(serving["modelCpu"]),
            model_memory=str(serving["modelMemory"]),
            transformer_cpu=str(serving["transformerCpu"]),
            transformer_memory=str(serving["transformerMemory"]),
            min_area_m2=float(serving["minAreaM2"]),
            simplify_tolerance_m=float(serving["simplifyToleranceM"]),
            skip_values=str(serving["skipValues"]),
        ),
        workflows=WorkflowSettings(),
    )
