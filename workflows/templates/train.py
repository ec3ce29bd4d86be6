"""``geomlops-train``: train a registered model package on a dataset version, then wait.

resolve → materialise → train → evaluate → register → approve (suspend) → approved (the
version must have been promoted by an approver: resuming alone approves nothing). Every pod runs one
``geomlops train-step`` command; ``resolve`` saves the run's config in S3 and hands its URI
(and the package's image) to the rest through output parameters, so no step depends on a
disk another pod wrote. Train and evaluate run in the package's own image and ask for GPUs
as the training settings say (none when ``gpus`` is 0); the platform steps run in the
platform image. Service URLs and credentials come from one Kubernetes Secret, each key
optional, so that a local run takes them from the executor's environment instead.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import (
    DAG,
    Container,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnv,
    Suspend,
    WorkflowTemplate,
)
from hera.workflows import models as m

from geomlops.settings import Settings

TRAIN = "geomlops-train"
OUTPUTS = "/tmp/outputs"  # noqa: S108 - a path inside the pod; locally mapped per pod
"""Where ``resolve`` writes its output parameters (map it with GEOMLOPS_WORKFLOWS_PATH_MAP)."""

# Workflow parameters: name -> (default or None when required, description).
PARAMETERS: dict[str, tuple[str | None, str]] = {
    "package": (None, "Registered model package to train, e.g. flood-water-s2."),
    "package-version": ("", "Package version; empty means the newest registered."),
    "dataset": (None, "Dataset to train on: NAME (latest version) or NAME@vN."),
    "epochs": ("6", "Passes over the training patches (integer >= 1)."),
    "batch-size": ("16", "Patches per optimisation step (integer >= 1)."),
    "learning-rate": ("0.001", "AdamW learning rate (number > 0)."),
    "seed": ("0", "Seed of Python, NumPy and torch (integer >= 0)."),
    "device": ("auto", "auto (CUDA when present), cpu, cuda or cuda:N."),
    "submitted-by": (
        "",
        "Identity that submitted the run, who may not approve it; `geomlops workflows "
        "submit` sets it from the credential in use.",
    ),
}

# (environment variable, key in the platform Secret)
_SECRET_ENV = (
    ("GEOMLOPS_STAC_URL", "stac-url"),
    ("GEOMLOPS_API_KEY", "api-key"),
    ("GEOMLOPS_MLFLOW_TRACKING_URI", "mlflow-tracking-uri"),
    ("GEOMLOPS_S3_ENDPOINT_URL", "s3-endpoint-url"),
    ("GEOMLOPS_S3_ACCESS_KEY", "s3-access-key"),
    ("GEOMLOPS_S3_SECRET_KEY", "s3-secret-key"),
    ("GEOMLOPS_DATASETS_GIT_REMOTE", "datasets-git-remote"),
    # The register step appends to the audit log, which lives in the platform's database.
    ("GEOMLOPS_DB_DSN", "db-dsn"),
)


def _env(settings: Settings) -> list[SecretEnv]:
    secret = settings.training.platform_secret
    return [
        SecretEnv(name=name, secret_name=secret, secret_key=key, optional=True)
        for name, key in _SECRET_ENV
    ]


def _retry(limit: int) -> RetryStrategy:
    """Retries for transient failures (an object store or catalog briefly away)."""
    return RetryStrategy(
        limit=str(limit),  # the Argo schema types int-or-string fields as strings
        retry_policy="Always",
        backoff=m.Backoff(duration="3s", factor=m.IntOrString(root="2"), max_duration="1m"),
    )


def _gpu_scheduling(settings: Settings) -> dict[str, Any]:
    """Resources, tolerations and node selector of a GPU pod; nothing when gpus is 0."""
    training = settings.training
    if training.gpus == 0:
        return {}
    return {
        "resources": Resources(gpus=training.gpus, gpu_flag=training.gpu_resource),
        "tolerations": [m.Toleration(**t) for t in training.gpu_tolerations] or None,
        "node_selector": dict(training.gpu_node_selector) or None,
    }


def _step(
    name: str,
    settings: Settings,
    *,
    image: str,
    retries: int,
    gpu: bool = False,
) -> Container:
    return Container(
        name=name,
        image=image,
        command=["geomlops"],
        args=["train-step", name, "--config", "{{inputs.parameters.config}}"],
        inputs=[
            Parameter(name="config", description="s3:// URI of the run's config."),
            *([Parameter(name="image", description="The package's image.")] if gpu else []),
        ],
        env=_env(settings),
        retry_strategy=_retry(retries) if retries else None,
        **(_gpu_scheduling(settings) if gpu else {}),
    )


def run_uri(settings: Settings, workflow: str = "{{workflow.name}}") -> str:
    """The S3 folder of a ``geomlops-train`` run's documents (config, step records)."""
    return f"s3://{settings.s3.bucket_mlflow}/workflow-runs/{workflow}"


def train_template(settings: Settings) -> WorkflowTemplate:
    """Build ``geomlops-train`` for the given settings (GPU scheduling, images, buckets)."""
    with WorkflowTemplate(
        name=TRAIN,
        entrypoint="main",
        annotations={
            "workflows.argoproj.io/description": "Train a registered model package on a "
            "DVC dataset version, evaluate it, register a candidate model version, and "
            "wait for approval."
        },
        labels={"app.kubernetes.io/part-of": "geomlops"},
        arguments=[
            Parameter(
                name=name, description=text, **({} if default is None else {"value": default})
            )
            for name, (default, text) in PARAMETERS.items()
        ],
    ) as template:
        # fmt: off
        resolve_args = [
            "train-step", "resolve",
            "--workflow", "{{workflow.name}}",
            "--run-uri", run_uri(settings),
            "--package", "{{workflow.parameters.package}}",
            "--package-version", "{{workflow.parameters.package-version}}",
            "--dataset", "{{workflow.parameters.dataset}}",
            "--epochs", "{{workflow.parameters.epochs}}",
            "--batch-size", "{{workflow.parameters.batch-size}}",
            "--learning-rate", "{{workflow.parameters.learning-rate}}",
            "--seed", "{{workflow.parameters.seed}}",
            "--device", "{{workflow.parameters.device}}",
            "--submitted-by", "{{workflow.parameters.submitted-by}}",
            "--outputs", OUTPUTS,
        ]
        # fmt: on
        resolve = Container(
            name="resolve",
            image=settings.training.platform_image,
            command=["geomlops"],
            args=resolve_args,
            outputs=[
                Parameter(
                    name="config",
                    description="s3:// URI of the run's saved config.",
                    value_from=m.ValueFrom(path=f"{OUTPUTS}/config"),
                ),
                Parameter(
                    name="image",
                    description="Image of the resolved package.",
                    value_from=m.ValueFrom(path=f"{OUTPUTS}/image"),
                ),
            ],
            env=_env(settings),
            retry_strategy=_retry(2),
        )
        platform = settings.training.platform_image
        materialise = _step("materialise", settings, image=platform, retries=2)
        train = _step("train", settings, image="{{inputs.parameters.image}}", retries=0, gpu=True)
        evaluate = _step(
            "evaluate", settings, image="{{inputs.parameters.image}}", retries=1, gpu=True
        )
        register = _step("register", settings, image=platform, retries=2)
        approve = Suspend(name="approve")
        approved = _step("approved", settings, image=platform, retries=0)

        with DAG(name="main"):
            config = {"config": "{{tasks.resolve.outputs.parameters.config}}"}
            image = {"image": "{{tasks.resolve.outputs.parameters.image}}"}
            (
                resolve(name="resolve")
                >> materialise(name="materialise", arguments=config)
                >> train(name="train", arguments={**config, **image})
                >> evaluate(name="evaluate", arguments={**config, **image})
                >> register(name="register", arguments=config)
                >> approve(name="approve")
                >> approved(name="approved", arguments=config)
            )
    return template
