"""The dataset repository: add a version (git commit + DVC push + tag + STAC item), list, show.

Layout of the repository (a git working copy under the state directory, or a clone of
``GEOMLOPS_DATASETS_GIT_REMOTE``): ``NAME.dvc`` per dataset at the root, the DVC remote
``storage`` = ``s3://<dvc bucket>/<prefix>`` in the committed ``.dvc/config``. The data is
sent straight to the remote (``dvc add --to-remote``), so the repository never holds a
copy of it. The S3 endpoint and keys are given to DVC in memory for each operation: they
are never written into any config file, committed or not.

Adding a version is all or nothing: if pushing the data, committing, writing the catalog
item or tagging fails, the commit and the tag are undone and no item is left behind; the
version exists only once its tag does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError

from geomlops.connections import Connections, get_connections
from geomlops.datasets.describe import FileSummary, summarise
from geomlops.datasets.refs import DatasetRef, check_name, item_id_for, tag_for
from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed
from geomlops.settings import Settings, get_settings

log = logging.getLogger(__name__)

REMOTE = "storage"
"""Name of the DVC remote in the dataset repository."""
_IDENTITY = ("-c", "user.name=geomlops", "-c", "user.email=geomlops@localhost")


class DatasetError(GeomlopsError):
    """Git or DVC refused an operation on the dataset repository."""


@dataclass(frozen=True)
class DatasetVersion:
    """One tagged version: what it is, where its bytes are, what they must hash to."""

    name: str
    number: int
    git_rev: str
    md5: str
    """DVC checksum of the data (``<md5>.dir`` for a directory)."""
    size: int
    file_count: int
    description: str
    created: str
    repo_url: str

    @property
    def version(self) -> str:
        return f"v{self.number}"

    @property
    def tag(self) -> str:
        return tag_for(self.name, self.number)

    @property
    def item_id(self) -> str:
        return item_id_for(self.name, self.number)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(version=self.version, tag=self.tag, item_id=self.item_id)
        return data


@contextlib.contextmanager
def dvc_talks_on_stderr() -> Iterator[None]:
    """DVC prints hints on stdout; ours carries results only (the CLI contract).

    Its logger's handler holds the stdout it found when set up, so its level is raised too
    (the hints are INFO: "git add …", which this module does itself).
    """
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        dvc_logger.setLevel(level)


def dvc_remote_config(conn: Connections) -> dict[str, str]:
    """The S3 settings DVC needs for the remote, kept in memory only."""
    return {
        "endpointurl": conn.s3_endpoint_url,
        "access_key_id": conn.s3_access_key,
        "secret_access_key": conn.s3_secret_key,
        "region": conn.s3_region,
    }


class DatasetRegistry:
    """Adds, lists and shows dataset versions in the dataset repository."""

    def __init__(self, settings: Settings | None = None, catalog: Any = None) -> None:
        """Use ``catalog`` (a CatalogClient), else the configured one when first needed."""
        self.settings = settings or get_settings()
        self.root = self.settings.datasets_repo
        self._catalog = catalog

    # --- git ------------------------------------------------------------------------------
    def _git(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["git", *_IDENTITY, *args], cwd=self.root, capture_output=True, text=True
        )
        if check and done.returncode != 0:
            raise DatasetError(f"git {' '.join(args)} failed in {self.root}: {done.stderr.strip()}")
        return done.stdout.strip()

    @property
    def repo_url(self) -> str:
        """Where a pod reads the repository from: the git remote, else the local copy."""
        return self.settings.datasets.git_remote or str(self.root)

    def ensure_repo(self) -> None:
        """Create (or clone) the repository and its DVC remote, once."""
        if (self.root / ".dvc").is_dir():
            return
        remote = self.settings.datasets.git_remote
        self.root.parent.mkdir(parents=True, exist_ok=True)
        if remote and not self.root.exists():
            done = subprocess.run(
                ["git", "clone", remote, str(self.root)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise DatasetError(f"cannot clone {remote}: {done.stderr.strip()}")
            if (self.root / ".dvc").is_dir():
                return
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            self._git("init", "-q", "-b", "main")
        from dvc.repo import Repo

        with dvc_talks_on_stderr():
            repo = Repo.init(str(self.root))
        s3 = self.settings.s3
        url = f"s3://{s3.bucket_dvc}/{self.settings.datasets.remote_prefix.strip('/')}"
        with repo.config.edit("repo") as config:
            config["core"]["remote"] = REMOTE
            config["core"]["autostage"] = False
            config["core"]["analytics"] = False
            config["remote"][REMOTE] = {"url": url}
        repo.close()
        self._git("add", ".dvc", ".dvcignore")
        self._git("commit", "-q", "-m", "Dataset repository: DVC remote in the dvc bucket")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two `dataset add` would race for the same version)."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with (self.root.parent / "repo.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- reading --------------------------------------------------------------------------
    def _tags(self, name: str | None = None) -> list[tuple[str, int]]:
        if not (self.root / ".git").exists():
            return []
        pattern = f"{name}@v*" if name else "*@v*"
        found = []
        for tag in self._git("tag", "--list", pattern).splitlines():
            ref_name, _, number = tag.rpartition("@v")
            if number.isdigit() and (name is None or ref_name == name):
                found.append((ref_name, int(number)))
        return sorted(found)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._tags()})

    def versions(self, name: str) -> list[DatasetVersion]:
        return [self._version(name, number) for _, number in self._tags(name)]

    def resolve(self, ref: DatasetRef | str) -> DatasetVersion:
        """The version ``ref`` names (the latest for a bare name); NotFoundError if none."""
        ref = DatasetRef.parse(ref) if isinstance(ref, str) else ref
        numbers = [number for _, number in self._tags(ref.name)]
        if not numbers:
            raise NotFoundError(
                f"no dataset named {ref.name!r}",
                hint="`geomlops dataset list` shows the datasets; add one with "
                "`geomlops dataset add PATH --name NAME`",
            )
        number = ref.number if ref.number is not None else max(numbers)
        if number not in numbers:
            listed = ", ".join(f"v{n}" for n in numbers)
            raise NotFoundError(
                f"dataset {ref.name!r} has no version v{number} (it has {listed})",
                hint=f"`geomlops dataset show {ref.name}` describes the latest",
            )
        return self._version(ref.name, number)

    def _version(self, name: str, number: int) -> DatasetVersion:
        tag = tag_for(name, number)
        return self._from_dvcfile(
            name,
            number,
            self._git("rev-list", "-n", "1", tag),
            self._git("show", f"{tag}:{name}.dvc"),
        )

    def _from_dvcfile(self, name: str, number: int, rev: str, text: str) -> DatasetVersion:
        dvcfile = yaml.safe_load(text)
        out = dvcfile["outs"][0]
        meta = dvcfile.get("meta") or {}
        return DatasetVersion(
            name=name,
            number=number,
            git_rev=rev,
            md5=out["md5"],
            size=int(out.get("size", 0)),
            file_count=int(out.get("nfiles", 1)),
            description=str(meta.get("description", "")),
            created=str(meta.get("created", "")),
            repo_url=self.repo_url,
        )

    # --- adding ---------------------------------------------------------------------------
    def add(
        self,
        path: Path,
        name: str,
        *,
        description: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Add ``path`` (a directory) as the next version of ``name``.

        Returns the version and whether it is new: data identical to the latest version
        adds nothing and returns that version.
        """
        check_name(name)
        path = path.expanduser().absolute()
        if not path.is_dir():
            raise ValidationFailed(
                f"{path} is not a directory", hint="pass the folder holding the dataset's files"
            )
        summary = summarise(path)
        if summary.file_count == 0:
            raise ValidationFailed(f"{path} holds no files")
        conn = get_connections(self.settings)
        with self._locked():
            self.ensure_repo()
            if self._git("status", "--porcelain"):
                raise DatasetError(
                    f"the dataset repository {self.root} has uncommitted changes",
                    hint="inspect it with `git -C REPO status`; nothing was added",
                )
            existing = self._tags(name)
            if existing:
                latest = self._version(name, existing[-1][1])
                if latest.md5 == f"{summary.dir_md5}.dir":
                    return latest, False
            number = (existing[-1][1] + 1) if existing else 1
            return self._add_version(path, name, number, summary, conn, description, start, end)

    def _add_version(
        self,
        path: Path,
        name: str,
        number: int,
        summary: FileSummary,
        conn: Connections,
        description: str,
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[DatasetVersion, bool]:
        head = self._git("rev-parse", "HEAD")
        tag = tag_for(name, number)
        created = datetime.now(UTC).replace(microsecond=0)
        item_written = False
        try:
            md5 = self._push_data(path, name, conn)
            if md5 != f"{summary.dir_md5}.dir":
                raise DatasetError(
                    f"{path} changed while it was being added (DVC saw {md5}, "
                    f"read {summary.dir_md5}.dir)",
                    hint="add it again once nothing writes to it",
                )
            self._annotate(name, description, created)
            self._git(
                "add",
                f"{name}.dvc",
                *([".gitignore"] if (self.root / ".gitignore").exists() else []),
            )
            self._git("commit", "-q", "-m", f"Dataset {tag}: {description or name}")
            version = self._version_from_head(name, number)
            self._write_item(version, summary, start, end, created)
            item_written = True
            self._git("tag", "-a", tag, "-m", f"dataset {tag}")
            self._push_git(tag)
        except BaseException:
            self._undo(head, tag, version_item=item_id_for(name, number) if item_written else None)
            raise
        return self._version(name, number), True

    def _push_data(self, path: Path, name: str, conn: Connections) -> str:
        """``dvc add --to-remote``: hash, upload, write ``NAME.dvc``; returns the checksum."""
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        try:
            with (
                dvc_talks_on_stderr(),
                Repo(str(self.root), remote_config=dvc_remote_config(conn)) as repo,
            ):
                repo.add(str(path), out=str(self.root / name), to_remote=True, remote=REMOTE)
        except (DvcException, BotoCoreError, OSError) as exc:
            raise DatasetError(
                f"could not push {path} to the DVC remote at {conn.s3_endpoint_url}: {exc}",
                hint="check that the stack is up (`geomlops status`); nothing was added",
            ) from exc
        dvcfile = yaml.safe_load((self.root / f"{name}.dvc").read_text())
        return str(dvcfile["outs"][0]["md5"])

    def _annotate(self, name: str, description: str, created: datetime) -> None:
        dvcpath = self.root / f"{name}.dvc"
        dvcfile = yaml.safe_load(dvcpath.read_text())
        dvcfile["meta"] = {"description": description, "created": created.isoformat()}
        dvcpath.write_text(yaml.safe_dump(dvcfile, sort_keys=False))

    def _version_from_head(self, name: str, number: int) -> DatasetVersion:
        return self._from_dvcfile(
            name,
            number,
            self._git("rev-parse", "HEAD"),
            (self.root / f"{name}.dvc").read_text(),
        )

    def _write_item(
        self,
        version: DatasetVersion,
        summary: FileSummary,
        start: datetime | None,
        end: datetime | None,
        created: datetime,
    ) -> None:
        from geomlops.catalog.collections import DATASETS
        from geomlops.datasets.item import dataset_item

        item = dataset_item(
            version,
            summary,
            s3_bucket=self.settings.s3.bucket_dvc,
            remote_prefix=self.settings.datasets.remote_prefix,
            start=start or summary.start,
            end=end or summary.end,
            created=created,
        )
        with self._catalog_client() as catalog:
            catalog.upsert_item(item, DATASETS)

    def _push_git(self, tag: str) -> None:
        if self.settings.datasets.git_remote:
            self._git("push", "--atomic", "origin", "HEAD", tag)

    def _undo(self, head: str, tag: str, *, version_item: str | None) -> None:
        """Take back a half-added version: tag, commit, ``NAME.dvc``, catalog item."""
        with contextlib.suppress(GeomlopsError):
            self._git("tag", "-d", tag, check=False)
            self._git("reset", "-q", "--hard", head)
            self._git("clean", "-q", "-fd")
        if version_item is not None:
            from geomlops.catalog.collections import DATASETS

            try:
                with self._catalog_client() as catalog:
                    catalog.delete_item(DATASETS, version_item)
            except GeomlopsError as exc:  # pragma: no cover - reported, the original error wins
                log.error("could not remove catalog item %s: %s", version_item, exc)

    @contextlib.contextmanager
    def _catalog_client(self) -> Iterator[Any]:
        """The given catalog client, or the configured one, closed after use."""
        if self._catalog is not None:
            yield self._catalog
            return
        from geomlops.catalog.client import CatalogClient

        with CatalogClient.from_settings(self.settings) as client:
            yield client

    def item(self, version: DatasetVersion) -> dict[str, Any]:
        """The version's item in the ``datasets`` collection."""
        from geomlops.catalog.collections import DATASETS

        with self._catalog_client() as catalog:
            return catalog.get_item_dict(DATASETS, version.item_id)


def stage_files(sources: list[Path], base: Path, dest: Path) -> Path:
    """Copy ``sources`` into ``dest`` at their paths relative to ``base`` (a dataset layout)."""
    for source in sources:
        try:
            relative = source.absolute().relative_to(base.absolute())
        except ValueError:
            raise ValidationFailed(f"{source} is not under {base}") from None
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    return dest


@contextlib.contextmanager
def staged(sources: list[Path], base: Path) -> Iterator[Path]:
    """A temporary directory holding ``sources`` at their paths under ``base``."""
    with tempfile.TemporaryDirectory(prefix="geomlops-dataset-") as tmp:
        yield stage_files(sources, base, Path(tmp) / "data")


def version_json(versions: list[DatasetVersion]) -> str:
    """Versions as a JSON list."""
    return json.dumps([v.to_json() for v in versions], indent=2)
