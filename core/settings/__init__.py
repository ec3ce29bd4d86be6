"""The one settings object every component reads.

One pydantic-settings class per concern, composed into :class:`Settings`. Each field is
read from a ``GEOMLOPS_*`` environment variable, so the same code runs against the local
stack (where ports are chosen at ``geomlops up`` and remembered in the state directory) and
a cluster (where URLs are given). No other module reads ``os.environ`` for configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

from geomlops.settings.base import LOOPBACK
from geomlops.settings.gateway import GatewaySettings
from geomlops.settings.jobs import (
    ArgoSettings,
    DatasetSettings,
    InferenceSettings,
    RegistrationSettings,
    ServingSettings,
    TrainingSettings,
    WorkflowSettings,
)
from geomlops.settings.processors import ProcessorSettings
from geomlops.settings.services import (
    AuthSettings,
    CatalogSettings,
    DatabaseSettings,
    MLflowSettings,
    S3Settings,
    SampleDataSettings,
    StacApiSettings,
    StackSettings,
)


class Settings(BaseModel):
    """All settings, one attribute per concern."""

    stack: StackSettings = Field(default_factory=StackSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MLflowSettings = Field(default_factory=MLflowSettings)
    stac: StacApiSettings = Field(default_factory=StacApiSettings)
    sample_data: SampleDataSettings = Field(default_factory=SampleDataSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    datasets: DatasetSettings = Field(default_factory=DatasetSettings)
    argo: ArgoSettings = Field(default_factory=ArgoSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)

    @property
    def workflows_state_dir(self) -> Path:
        """Where local workflow runs live (the one place this default is computed)."""
        return self.workflows.state_dir or self.stack.home / "workflows"

    @property
    def datasets_repo(self) -> Path:
        """The dataset repository's working copy (the one place this default is computed)."""
        return self.datasets.repo or self.stack.home / "datasets" / "repo"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


__all__ = [
    "LOOPBACK",
    "ArgoSettings",
    "AuthSettings",
    "CatalogSettings",
    "DatabaseSettings",
    "DatasetSettings",
    "GatewaySettings",
    "InferenceSettings",
    "MLflowSettings",
    "ProcessorSettings",
    "RegistrationSettings",
    "S3Settings",
    "SampleDataSettings",
    "ServingSettings",
    "Settings",
    "StacApiSettings",
    "StackSettings",
    "TrainingSettings",
    "WorkflowSettings",
    "get_settings",
]
