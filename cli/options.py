"""Options and arguments that several verb groups take, defined once.

The same flag means the same thing, with the same help, wherever it appears: ``--json``
always prints JSON on stdout for a program to read; a model is always named the way the
registry names it. Each is an ``Annotated`` type, so a command declares
``as_json: JsonOption = False`` and the default stays visible at the command.

Kept free of anything but typer: every verb module imports this at start-up.
"""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, for programs.")]
"""Results as JSON on stdout (logs stay on stderr); the default is text for a person."""

ModelArg = Annotated[str, typer.Argument(help="Registered model name, e.g. flood-water-s2.")]

ModelVersionOption = Annotated[
    str | None,
    typer.Option(
        "--version", help="Model version (any but a rejected one); default: the production version."
    ),
]
"""Which version of a model to use; unset means the one with the production alias. The
model-version contract (``geomlops.model.resolve``) refuses a rejected version."""

ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why: recorded in the audit log for good.")
]
"""Required: a decision about a model version is refused without a reason."""

RunReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (recorded).")]
"""Optional, for what is done to a workflow run (stop, resume); recorded with it."""

RunArg = Annotated[str, typer.Argument(help="Name of the workflow run.")]

ParameterOption = Annotated[
    list[str] | None, typer.Option("--parameter", "-p", help="Workflow parameter k=v.")
]

NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="Return once submitted.")]

WorkflowOption = Annotated[str, typer.Option(help="Name of the workflow run.")]
"""Of a pod step: the run it belongs to (Argo's ``{{workflow.name}}``)."""

ConfigOption = Annotated[str, typer.Option("--config", help="s3:// URI of the run's config.")]
"""Of a pod step: the config the run's first step saved; the step's only input."""
