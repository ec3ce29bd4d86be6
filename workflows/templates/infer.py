"""``geomlops-batch-inference``: a model over an AOI and a date range, in shards.

plan → predict (fanned out over the plan's shards, a bounded number: never one node per
tile, which breaks Argo at scale) → publish → process (the generic processors the request
named, each in its own limited process; nothing when it named none); the exit handler
``report`` records the final task counts whatever happened. Every pod runs one
``geomlops infer-step`` command; ``plan`` saves the run's plan in S3 and hands its URI,
the shard list and the model's image to the rest through output parameters. Predict pods
run in the model package's image and ask for GPUs as the inference settings say; a failed
shard pod is retried (its done tiles are kept). ``resume-from`` names an earlier run whose
missing tiles this run completes.
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Parameter, WorkflowTemplate

from geomlops.settings import Settings
from geomlops.workflows.templates.parts import (
    OUTPUTS,
    TERMINATION_LOG,
    Parameters,
    chain,
    gpu_scheduling,
    output_file,
    platform_env,
    platform_template,
    retry,
    task,
)

INFER = "geomlops-batch-inference"

PARAMETERS: Parameters = {
    "model": (None, "Registered model, e.g. flood-water-s2 (its production version)."),
    "version": ("", "Model version number; empty means the production version."),
    "aoi": (None, "s3:// URI of the AOI GeoJSON (EPSG:4326); `geomlops infer` uploads it."),
    "datetime": (None, "START/END of the scenes' acquisition (RFC 3339; `..` = open)."),
    "allow-outside-region": (
        "false",
        "true runs an AOI beyond the model's footprint; its outputs are flagged.",
    ),
    "resume-from": ("", "A run whose plan to reuse, running only its missing tiles."),
    "scenes": (
        "",
        "Comma-separated imagery item ids to use, all of which must be found; empty uses "
        "every scene found (`geomlops reproduce` pins a prediction's scenes).",
    ),
    "processor": (
        "",
        "Comma-separated generic processors (NAME or NAME@VERSION from the `processors` "
        "collection) the `process` step runs on the published outputs; empty: none.",
    ),
    "processor-params": (
        "{}",
        "JSON object of the processors' parameters (`geomlops infer -p KEY=VALUE`).",
    ),
}


def infer_template(settings: Settings) -> WorkflowTemplate:
    """Build ``geomlops-batch-inference`` for the given settings."""
    platform = settings.training.platform_image
    with platform_template(
        INFER,
        "Run a model version over the scenes that cover an AOI in a date range: plan tiles "
        "and shards, predict in parallel pods, publish COGs, GeoJSON and prediction items.",
        PARAMETERS,
        on_exit="report",
        service_account_name=settings.training.service_account,
    ) as template:
        # fmt: off
        plan_args = [
            "infer-step", "plan",
            "--workflow", "{{workflow.name}}",
            "--model", "{{workflow.parameters.model}}",
            "--version", "{{workflow.parameters.version}}",
            "--aoi", "{{workflow.parameters.aoi}}",
            "--datetime", "{{workflow.parameters.datetime}}",
            "--allow-outside-region", "{{workflow.parameters.allow-outside-region}}",
            "--resume-from", "{{workflow.parameters.resume-from}}",
            "--scenes", "{{workflow.parameters.scenes}}",
            "--processor", "{{workflow.parameters.processor}}",
            "--processor-params", "{{workflow.parameters.processor-params}}",
            "--outputs", OUTPUTS,
        ]
        # fmt: on
        plan = Container(
            name="plan",
            image=platform,
            command=["geomlops"],
            args=plan_args,
            outputs=[
                output_file("config", "s3:// URI of the run's saved plan."),
                output_file("shards", "JSON list of the shards to predict."),
                output_file("image", "Image of the model's package (predict pods run in it)."),
            ],
            env=platform_env(settings),
            # A user error (no imagery, AOI outside the region) fails at once, saying why.
            retry_strategy=retry(2, stop_on_user_error=True),
            termination_message_path=f"{OUTPUTS}/{TERMINATION_LOG}",
        )
        predict = Container(
            name="predict",
            image="{{inputs.parameters.image}}",
            command=["geomlops"],
            args=[
                "infer-step",
                "predict",
                "--config",
                "{{inputs.parameters.config}}",
                "--shard",
                "{{inputs.parameters.shard}}",
            ],
            inputs=[
                Parameter(name="config", description="s3:// URI of the run's plan."),
                Parameter(name="image", description="The model package's image."),
                Parameter(name="shard", description="Index of the shard to predict."),
            ],
            env=platform_env(settings),
            retry_strategy=(
                retry(settings.inference.shard_retries)
                if settings.inference.shard_retries
                else None
            ),
            **gpu_scheduling(settings, settings.inference.gpus),
        )
        publish = Container(
            name="publish",
            image=platform,
            command=["geomlops"],
            args=[
                "infer-step",
                "publish",
                "--config",
                "{{inputs.parameters.config}}",
                "--workflow-run",
                "{{workflow.name}}",
            ],
            inputs=[Parameter(name="config", description="s3:// URI of the run's plan.")],
            env=platform_env(settings),
            retry_strategy=retry(2),
        )
        process = Container(
            name="process",
            image=platform,
            command=["geomlops"],
            args=[
                "infer-step",
                "process",
                "--config",
                "{{inputs.parameters.config}}",
                "--outputs",
                OUTPUTS,
            ],
            inputs=[Parameter(name="config", description="s3:// URI of the run's plan.")],
            env=platform_env(settings),
            # No retry: a processor that failed, timed out or printed non-JSON does so again.
            termination_message_path=f"{OUTPUTS}/{TERMINATION_LOG}",
        )
        Container(
            name="report",
            image=platform,
            command=["geomlops"],
            args=[
                "infer-step",
                "report",
                "--workflow",
                "{{workflow.name}}",
                "--status",
                "{{workflow.status}}",
                "--resume-from",
                "{{workflow.parameters.resume-from}}",
            ],
            env=platform_env(settings),
            retry_strategy=retry(2),
        )

        with DAG(name="main"):
            config = {"config": "{{tasks.plan.outputs.parameters.config}}"}
            chain(
                task(plan, "plan"),
                task(
                    predict,
                    "predict",
                    arguments={
                        **config,
                        "image": "{{tasks.plan.outputs.parameters.image}}",
                        "shard": "{{item}}",
                    },
                    with_param="{{tasks.plan.outputs.parameters.shards}}",
                ),
                task(publish, "publish", arguments=config),
                task(process, "process", arguments=config),
            )
    return template
