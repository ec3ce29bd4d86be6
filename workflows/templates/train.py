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

from hera.workflows import (
    DAG,
    Container,
    Parameter,
    Suspend,
    WorkflowTemplate,
)
from hera.workflows import models as m

from geomlops.settings import Settings
from geomlops.workflows.templates.parts import (
    OUTPUTS,
    Parameters,
    chain,
    gpu_scheduling,
    output_file,
    platform_env,
    platform_template,
    retry,
    task,
)

TRAIN = "geomlops-train"
APPROVE = "approve"
"""The suspended node that waits for the approver's decision."""
DECISION = "decision"
"""Output parameter of :data:`APPROVE`, supplied at resume."""
APPROVED, REJECTED = "approved", "rejected"
"""The values of :data:`DECISION` (also the names of the steps they lead to)."""

PARAMETERS: Parameters = {
    "package": (None, "Registered model package to train, e.g. flood-water-s2."),
    "package-version": ("", "Package version; empty means the newest registered."),
    "dataset": (None, "Dataset to train on: NAME (latest version) or NAME@vN."),
    # Hyperparameters: empty means the package's own default (its MLproject); the template
    # has none of its own, so what the catalog records is what the package trained with.
    "epochs": ("", "Passes over the training patches (integer >= 1); empty: the package's."),
    "batch-size": ("", "Patches per optimisation step (integer >= 1); empty: the package's."),
    "learning-rate": ("", "AdamW learning rate (number > 0); empty: the package's."),
    "seed": ("", "Seed of Python, NumPy and torch (integer >= 0); empty: the package's."),
    "device": ("auto", "auto (CUDA when present), cpu, cuda or cuda:N."),
    "submitted-by": (
        "",
        "Identity that submitted the run, who may not approve it; `geomlops workflows "
        "submit` sets it from the credential in use.",
    ),
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
        env=platform_env(settings),
        retry_strategy=retry(retries) if retries else None,
        **(gpu_scheduling(settings, settings.training.gpus) if gpu else {}),
    )


def run_uri(settings: Settings, workflow: str = "{{workflow.name}}") -> str:
    """The S3 folder of a ``geomlops-train`` run's documents (config, step records)."""
    return f"s3://{settings.s3.bucket_mlflow}/workflow-runs/{workflow}"


def train_template(settings: Settings) -> WorkflowTemplate:
    """Build ``geomlops-train`` for the given settings (GPU scheduling, images, buckets)."""
    with platform_template(
        TRAIN,
        "Train a registered model package on a DVC dataset version, evaluate it, register "
        "a candidate model version, and wait for approval.",
        PARAMETERS,
        service_account_name=settings.training.service_account,
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
                output_file("config", "s3:// URI of the run's saved config."),
                output_file("image", "Image of the resolved package."),
            ],
            env=platform_env(settings),
            retry_strategy=retry(2),
        )
        platform = settings.training.platform_image
        materialise = _step("materialise", settings, image=platform, retries=2)
        train = _step("train", settings, image="{{inputs.parameters.image}}", retries=0, gpu=True)
        evaluate = _step(
            "evaluate", settings, image="{{inputs.parameters.image}}", retries=1, gpu=True
        )
        register = _step("register", settings, image=platform, retries=2)
        approve = Suspend(
            name=APPROVE,
            outputs=[
                Parameter(
                    name=DECISION,
                    description="approved (the default) or rejected: which step checks it.",
                    value_from=m.ValueFrom(supplied=m.SuppliedValueFrom(), default=APPROVED),
                )
            ],
        )
        approved = _step(APPROVED, settings, image=platform, retries=0)
        rejected = _step(REJECTED, settings, image=platform, retries=0)

        with DAG(name="main"):
            config = {"config": "{{tasks.resolve.outputs.parameters.config}}"}
            image = {"image": "{{tasks.resolve.outputs.parameters.image}}"}
            decided = f"{{{{tasks.{APPROVE}.outputs.parameters.{DECISION}}}}}"
            steps = [
                task(resolve, "resolve"),
                task(materialise, "materialise", arguments=config),
                task(train, "train", arguments={**config, **image}),
                task(evaluate, "evaluate", arguments={**config, **image}),
                task(register, "register", arguments=config),
                task(approve, APPROVE),
            ]
            chain(*steps)
            waiting = steps[-1]
            waiting >> task(approved, APPROVED, arguments=config, when=f"{decided} != {REJECTED}")
            waiting >> task(rejected, REJECTED, arguments=config, when=f"{decided} == {REJECTED}")
    return template
