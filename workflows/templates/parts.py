"""Pieces every platform WorkflowTemplate is built from: credentials, retries, GPUs, outputs.

Training and batch inference pods reach the same services with the same Secret, retry the
same transient failures, are scheduled on GPUs the same way and hand values to later steps
through files under :data:`OUTPUTS`; defining each once keeps the two templates alike.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hera.workflows import (
    Container,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnv,
    Suspend,
    Task,
    WorkflowTemplate,
)
from hera.workflows import models as m

from geomlops.settings import Settings

OUTPUTS = "/tmp/outputs"  # noqa: S108 - a path inside the pod; locally mapped per pod
"""Where steps write their output parameters (map it with GEOMLOPS_WORKFLOWS_PATH_MAP)."""
TERMINATION_LOG = "termination-log"
"""File under :data:`OUTPUTS` where a step says why it failed (its terminationMessagePath):
Argo shows it in the node's message, ``Error (exit code N): <it>``."""
NOT_RETRYABLE = 65
"""Exit code of a step whose failure no retry can fix (a user error: no imagery for the
dates, an AOI outside the model's region); retry strategies stop at once on it."""

# (environment variable, key in the platform Secret)
_SECRET_ENV = (
    ("GEOMLOPS_STAC_URL", "stac-url"),
    ("GEOMLOPS_API_KEY", "api-key"),
    ("GEOMLOPS_MLFLOW_TRACKING_URI", "mlflow-tracking-uri"),
    # MLflow's basic-auth app refuses every request without the platform's account.
    ("GEOMLOPS_MLFLOW_PASSWORD", "mlflow-password"),
    ("GEOMLOPS_S3_ENDPOINT_URL", "s3-endpoint-url"),
    ("GEOMLOPS_S3_ACCESS_KEY", "s3-access-key"),
    ("GEOMLOPS_S3_SECRET_KEY", "s3-secret-key"),
    ("GEOMLOPS_DATASETS_GIT_REMOTE", "datasets-git-remote"),
    # The register step appends to the audit log, which lives in the platform's database.
    ("GEOMLOPS_DB_DSN", "db-dsn"),
)


Parameters = dict[str, tuple[str | None, str]]
"""Workflow parameters: name -> (default, or None when required; description)."""


def platform_template(
    name: str, description: str, parameters: Parameters, **options: Any
) -> WorkflowTemplate:
    """A platform WorkflowTemplate with its description, labels and parameters.

    Labels and descriptions are how Argo's UI and `kubectl` find the platform's templates;
    building every header here keeps them findable the same way.
    """
    return WorkflowTemplate(
        name=name,
        entrypoint="main",
        annotations={"workflows.argoproj.io/description": description},
        labels={"app.kubernetes.io/part-of": "geomlops"},
        arguments=[
            Parameter(name=key, description=text)
            if default is None  # Hera writes value=None as the string "null"
            else Parameter(name=key, description=text, value=default)
            for key, (default, text) in parameters.items()
        ],
        **options,
    )


def platform_env(settings: Settings) -> list[SecretEnv]:
    """The platform's connection settings, each from its key in the platform Secret."""
    secret = settings.training.platform_secret
    return [
        SecretEnv(name=name, secret_name=secret, secret_key=key, optional=True)
        for name, key in _SECRET_ENV
    ]


def retry(limit: int, *, stop_on_user_error: bool = False) -> RetryStrategy:
    """Retries for transient failures (an object store or catalog briefly away).

    With ``stop_on_user_error``, an attempt that exits :data:`NOT_RETRYABLE` is the last:
    asking again for dates without imagery gets the same answer, minutes later.
    """
    return RetryStrategy(
        limit=str(limit),  # the Argo schema types int-or-string fields as strings
        retry_policy="Always",
        backoff=m.Backoff(duration="3s", factor=m.IntOrString(root="2"), max_duration="1m"),
        expression=f"asInt(lastRetry.exitCode) != {NOT_RETRYABLE}" if stop_on_user_error else None,
    )


def gpu_scheduling(settings: Settings, gpus: int) -> dict[str, Any]:
    """Resources, tolerations and node selector of a pod with ``gpus``; nothing when 0."""
    if gpus == 0:
        return {}
    training = settings.training
    return {
        "resources": Resources(gpus=gpus, gpu_flag=training.gpu_resource),
        "tolerations": [m.Toleration.model_validate(t) for t in training.gpu_tolerations] or None,
        "node_selector": dict(training.gpu_node_selector) or None,
    }


def output_file(name: str, description: str) -> Parameter:
    """An output parameter the step writes to ``OUTPUTS/name``."""
    return Parameter(
        name=name, description=description, value_from=m.ValueFrom(path=f"{OUTPUTS}/{name}")
    )


def chain(*tasks: Task) -> None:
    """Make each task depend on the one before it: ``a >> b >> c``, one link at a time.

    Hera's ``>>`` returns a task or a list, typed as either, so a chain of three or more
    does not type-check; linking pairs does the same and does.
    """
    for upstream, downstream in pairwise(tasks):
        upstream >> downstream


def task(template: Container | Suspend, name: str, **options: Any) -> Task:
    """Call ``template`` as the task ``name`` of the DAG being defined.

    Inside a ``DAG`` context Hera's call returns a :class:`Task`, but is typed for every
    context (a Step, or nothing outside one); this narrows it once, so DAGs chain with
    ``>>`` under the type checker as they do at run time.
    """
    created = template(name=name, **options)
    if not isinstance(created, Task):
        raise TypeError(f"{name}: a template called outside a DAG context")
    return created
