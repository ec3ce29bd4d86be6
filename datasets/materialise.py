"""Reading a dataset version by name: DVC fetches it from the remote, we check the bytes.

The only way training gets data. The repository is opened at the version's tag through
DVC's filesystem (``dvc.api``), with a cache of its own so that the bytes really come from
the remote (as they would in a fresh pod), and every file is hashed afterwards: DVC does
not re-hash what it downloads, so a remote object that was overwritten or damaged would
otherwise train a model on data the version never contained.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from botocore.exceptions import BotoCoreError

from geomlops.connections import get_connections
from geomlops.datasets.describe import dir_md5, file_md5
from geomlops.datasets.refs import DatasetRef
from geomlops.datasets.registry import (
    DatasetRegistry,
    DatasetVersion,
    dvc_remote_config,
    dvc_talks_on_stderr,
)
from geomlops.errors import GeomlopsError
from geomlops.settings import Settings, get_settings


class ChecksumMismatch(GeomlopsError):
    """The bytes of a dataset version no longer hash to what the version recorded."""


def materialise(
    ref: DatasetRef | str,
    dest: Path,
    *,
    settings: Settings | None = None,
    expected_md5: str | None = None,
) -> DatasetVersion:
    """Write version ``ref`` of a dataset into ``dest`` (created; must not exist or be empty).

    ``expected_md5`` pins the checksum as well (the workflow passes the one it resolved, so
    a tag moved meanwhile is caught too). The files appear in ``dest`` only once all were
    fetched and verified.
    """
    settings = settings or get_settings()
    registry = DatasetRegistry(settings)
    version = registry.resolve(ref)
    if expected_md5 is not None and version.md5 != expected_md5:
        raise ChecksumMismatch(
            f"dataset {version.tag} records checksum {version.md5}, expected {expected_md5}",
            hint="the tag was moved after the run resolved it; resolve the dataset again",
        )
    if dest.exists() and any(dest.iterdir()):
        raise GeomlopsError(f"{dest} is not empty", hint="materialise into a new directory")
    conn = get_connections(settings)
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".materialise-", dir=dest.parent) as tmp:
        staging = Path(tmp) / "data"
        try:
            fs = DVCFileSystem(
                version.repo_url,
                rev=version.tag,
                config={"cache": {"dir": str(Path(tmp) / "cache")}},
                remote_config=dvc_remote_config(conn),
            )
            with dvc_talks_on_stderr():
                fs.get(f"/{version.name}", str(staging), recursive=True)
        except (DvcException, BotoCoreError, OSError) as exc:
            raise GeomlopsError(
                f"could not fetch dataset {version.tag} from its DVC remote "
                f"({conn.s3_endpoint_url}): {exc}",
                hint="check that the object store is reachable (`geomlops status`)",
            ) from exc
        verify(staging, version)
        if dest.exists():
            dest.rmdir()
        shutil.move(str(staging), dest)
    return version


def verify(root: Path, version: DatasetVersion) -> None:
    """Raise ChecksumMismatch unless the files under ``root`` are exactly the version's."""
    files = {
        p.relative_to(root).as_posix(): file_md5(p) for p in sorted(root.rglob("*")) if p.is_file()
    }
    actual = f"{dir_md5(files)}.dir"
    if actual != version.md5:
        raise ChecksumMismatch(
            f"dataset {version.tag} does not match its recorded checksum: fetched files "
            f"hash to {actual}, the version recorded {version.md5} ({len(files)} files "
            f"fetched, {version.file_count} recorded)",
            hint="an object in the DVC remote was changed or damaged; restore it or add the "
            "data again as a new version",
        )
