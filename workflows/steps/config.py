"""The saved config of one training run: what every step of ``geomlops-train`` reads.

The first step resolves the workflow's parameters (package name, dataset reference) to
exact identities (package version, commit and image; dataset tag, revision and checksum)
and saves them here, in the run's folder in S3. Every later step reads only this document
and the results of the steps before it, so a step retried or resumed days later works on
exactly what the run started with. ``extra="forbid"`` and ``schema_version`` make a config
written by another version of the platform fail loudly instead of being half-understood.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from geomlops import objects
from geomlops.connections import Connections

CONFIG_FILE = "config.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackagePin(_Strict):
    """The model package as the catalog registered it."""

    name: str
    version: str
    git_commit: str = Field(description="Commit of the package source.")
    image: str = Field(description="Container image reference (digest when known).")
    source: str = Field(description="Where the package source is (href of its code asset).")
    git_url: str = Field(
        default="", description="The repository the package is cloned from outside its image."
    )
    path: str = Field(default="", description="The package's folder in that repository.")
    item_id: str = Field(description="Its item in the `models` collection.")


class DatasetPin(_Strict):
    """The dataset version, with the checksum its bytes must hash to."""

    name: str
    number: int = Field(ge=1)
    tag: str
    git_rev: str
    md5: str
    repo_url: str
    item_id: str


class TrainParams(_Strict):
    """What the submitter set for the package's ``train`` entry point.

    ``None`` means "the package's own default" (its MLproject): the platform adds no
    defaults of its own (:mod:`.params`).
    """

    epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, ge=0)
    device: str = "auto"

    def overrides(self) -> dict[str, str]:
        """The hyperparameters given, by the entry point's parameter names."""
        given = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }
        return {name: str(value) for name, value in given.items() if value is not None}


class TrainRunConfig(_Strict):
    """Everything a ``geomlops-train`` run works on, resolved once."""

    schema_version: Literal[1] = 1
    workflow: str = Field(description="Name of the workflow run (Argo `workflow.name`).")
    run_uri: str = Field(description="s3:// folder holding this run's config and results.")
    package: PackagePin
    dataset: DatasetPin
    train: TrainParams
    experiment: str = Field(
        description="MLflow experiment of the run's MLflow runs: the package's "
        "(geomlops.model.tracking.experiment_name)."
    )
    submitted_by: str = Field(
        default="", description="Identity that submitted the run: its trainer, never its approver."
    )

    def uri(self, name: str) -> str:
        """URI of a document or folder in this run's folder."""
        return f"{self.run_uri.rstrip('/')}/{name}"

    @property
    def data_uri(self) -> str:
        """Where the materialised, verified dataset is for the train and evaluate pods."""
        return self.uri("data")

    @classmethod
    def load(cls, conn: Connections, uri: str) -> TrainRunConfig:
        return cls.model_validate(objects.read_json(conn, uri))

    def save(self, conn: Connections) -> str:
        uri = self.uri(CONFIG_FILE)
        objects.write_json(conn, uri, self.model_dump(mode="json"))
        return uri
