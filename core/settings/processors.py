"""Settings of generic processors (`GEOMLOPS_PROCESSOR_*`): the limits each run is held to."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from geomlops.settings.base import config


class ProcessorSettings(BaseSettings):
    """Limits of one generic processor run (the `process` step of batch inference)."""

    model_config = config("GEOMLOPS_PROCESSOR_")

    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Wall-clock seconds a processor may run before its process group is "
        "killed (its CPU time is limited to the same, rounded up).",
    )
    memory_mb: int = Field(
        default=4096,
        ge=256,
        description="Address space (RLIMIT_AS) of the processor's process, in MiB; numpy, "
        "rasterio and pyproj alone map about 1 GiB.",
    )
    file_mb: int = Field(
        default=512, ge=1, description="Largest file the processor may write, in MiB."
    )
    max_output_files: int = Field(
        default=20, ge=0, description="Most files of its output folder stored with a run."
    )
    stderr_chars: int = Field(
        default=2000, ge=100, description="How much of a failed processor's stderr is kept."
    )
