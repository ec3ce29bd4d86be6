"""Where a registered package's code is, and a verified local checkout of it.

The catalog records a package's source as a git repository (``geomlops:git_url``),
a commit and the package's folder in that repository. On a cluster a step runs in the
package's image, which holds the package; everywhere else (the local executor, the
gateway's review of a version) the package is read from a checkout of exactly that commit.
Checkouts are kept under the platform home, ``<home>/packages/``:

- ``repos/<key>.git`` — one mirror per repository URL, fetched again only when a recorded
  commit is not in it yet;
- ``checkouts/<key>/<commit>/`` — the repository's tree at the commit (``git archive``, no
  ``.git``), written under a temporary name and renamed when complete, so a reader never sees
  half a checkout and two steps may ask for the same commit at once.

The commit is verified: it must name a commit in the repository (a short hash is resolved to
the full one); a tree that lacks the recorded folder is an error naming both.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from geomlops.errors import GeomlopsError, NotFoundError

GIT_TIMEOUT_S = 900.0
"""A clone of a large repository over a slow link still finishes; a hung one does not hang."""


@dataclass(frozen=True)
class PackageSource:
    """A package's code as the catalog records it: repository, commit, folder in it."""

    url: str
    """What ``git clone`` takes: an https or ssh URL, or a path to a repository."""
    commit: str
    path: str = ""
    """The package's folder in the repository (POSIX, relative; empty for the root)."""

    def __post_init__(self) -> None:
        relative = PurePosixPath(self.path or ".")
        if relative.is_absolute() or ".." in relative.parts:
            raise GeomlopsError(
                f"package folder {self.path!r} is not a relative path inside its repository",
                hint="register the package again with `geomlops package register`",
            )


class GitError(GeomlopsError):
    """git could not clone, fetch or read the recorded source."""


def _git(*args: str, cwd: Path | None = None, binary: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=not binary,
            check=False,
            timeout=GIT_TIMEOUT_S,
            env=env,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed", hint="install git (apt-get install git)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT_S:.0f} s") from exc


def _stderr(done: subprocess.CompletedProcess) -> str:
    err = done.stderr
    text = err.decode(errors="replace") if isinstance(err, bytes) else str(err or "")
    return text.strip().splitlines()[-1] if text.strip() else f"exit status {done.returncode}"


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process at a time updates a mirror (a second waits, then finds it fetched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _resolve(mirror: Path, commit: str) -> str | None:
    done = _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", cwd=mirror)
    return done.stdout.strip() if done.returncode == 0 else None


def _mirror(url: str, commit: str, root: Path) -> tuple[Path, str]:
    """The mirror of ``url`` holding ``commit`` (cloned or fetched as needed), full hash."""
    mirror = root / "repos" / f"{_key(url)}.git"
    with _locked(mirror.with_suffix(".lock")):
        if not (mirror / "HEAD").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=mirror.parent))
            done = _git("clone", "--mirror", "--quiet", url, str(tmp / "repo.git"))
            if done.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise GitError(
                    f"cannot clone the package repository {url}: {_stderr(done)}",
                    hint="check that the recorded geomlops:git_url is reachable from here "
                    "(credentials, network), or register the package from a reachable remote",
                )
            (tmp / "repo.git").rename(mirror)
            shutil.rmtree(tmp, ignore_errors=True)
        full = _resolve(mirror, commit)
        if full is None:
            _git("fetch", "--quiet", "--prune", "origin", cwd=mirror)
            full = _resolve(mirror, commit)
        if full is None:  # not on any branch or tag: ask for the commit itself
            _git("fetch", "--quiet", "origin", commit, cwd=mirror)
            full = _resolve(mirror, commit)
    if full is None:
        raise NotFoundError(
            f"commit {commit} is not in the package repository {url}",
            hint="push that commit to the repository (a commit only on the registering "
            "machine cannot be trained elsewhere), then train again",
        )
    return mirror, full


def checkout(source: PackageSource, home: Path) -> Path:
    """The package's folder in a checkout of ``source`` at its commit, under ``home``."""
    root = home / "packages"
    mirror, full = _mirror(source.url, source.commit, root)
    dest = root / "checkouts" / _key(source.url) / full
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        done = _git("archive", "--format=tar", full, cwd=mirror, binary=True)
        if done.returncode != 0:
            raise GitError(f"cannot read commit {full} of {source.url}: {_stderr(done)}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{full[:12]}-", dir=dest.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
                archive.extractall(tmp, filter="data")
            try:
                tmp.rename(dest)
            except OSError:  # another process finished the same checkout first
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    folder = dest / source.path if source.path else dest
    if not folder.is_dir():
        raise NotFoundError(
            f"commit {full[:12]} of {source.url} has no folder {source.path!r}",
            hint="the package was registered from another folder or commit: register it again",
        )
    return folder
