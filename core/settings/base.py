"""What every settings class shares: the env-prefix convention and where defaults are found."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

LOOPBACK = "127.0.0.1"

REPO_ROOT = Path(__file__).resolve().parents[2]
"""This checkout's root (editable installs): ``core/settings/`` lies two levels below it."""
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
"""``../shared/data`` next to the repository: sample imagery and the official schemas."""


def config(prefix: str) -> SettingsConfigDict:
    """Every settings class reads ``<prefix>FIELD`` and ignores variables it does not know."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", case_sensitive=False)


def repo_dir(name: str) -> Path | None:
    """``name`` at the root of this checkout, when it exists (editable installs)."""
    candidate = REPO_ROOT / name
    return candidate if candidate.is_dir() else None


def shared_data(relative: str) -> Path | None:
    """``relative`` under ``../shared/data`` next to the repository, when that checkout has it.

    Schemas and sample data are read offline from there first, so nothing is downloaded when
    a copy lies beside the checkout.
    """
    candidate = SHARED_DATA / relative if relative else SHARED_DATA
    return candidate if candidate.exists() else None
