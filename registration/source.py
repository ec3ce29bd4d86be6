"""Where a package's source comes from: its git repository, commit, and a content digest.

A package is identified by name and version; the *digest* of its files says whether two
registrations of that name and version are the same package. It is computed from the files
git would commit (tracked plus untracked-but-not-ignored), so a registration from a later
commit that did not touch the package is the same package, and a changed file under the same
version is a conflict. Outside a git repository every file counts but tool caches.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from geomlops.errors import GeomlopsError
from geomlops.registration.files import walk


def _git(cwd: Path, *args: str) -> str | None:
    """Output of a git command in ``cwd``, or None when it fails (not a repository, no git)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def repository_root(path: Path) -> Path | None:
    """The top of the git working tree holding ``path`` (not following ``path`` if a link)."""
    start = path.parent if path.is_symlink() or not path.is_dir() else path
    out = _git(start, "rev-parse", "--show-toplevel")
    return Path(out.strip()) if out else None


@dataclass(frozen=True)
class SourceInfo:
    """The commit a package is registered from."""

    repo_root: Path | None
    commit: str
    dirty: bool
    remote: str | None

    def source_href(self, package: Path) -> str:
        """A link to the package at this commit (GitHub tree URL when the remote is GitHub)."""
        if self.repo_root is not None and self.remote:
            relative = package.resolve().relative_to(self.repo_root.resolve()).as_posix()
            return f"{self.remote}/tree/{self.commit}/{relative}"
        return package.resolve().as_uri()


def _web_url(remote: str) -> str | None:
    """``https://github.com/owner/repo`` from an https or ssh GitHub remote."""
    remote = remote.strip().removesuffix(".git")
    if remote.startswith("git@github.com:"):
        return "https://github.com/" + remote.removeprefix("git@github.com:")
    if remote.startswith("https://github.com/"):
        return remote
    return None


def source_info(package: Path, commit: str | None = None) -> SourceInfo:
    """Repository, commit (``commit`` or HEAD) and whether the package has uncommitted changes.

    Raises when no commit is given and none can be found: a registration must name the
    source it came from.
    """
    root = repository_root(package)
    if root is None:
        if commit is None:
            raise GeomlopsError(
                f"{package} is not inside a git repository, so its commit is unknown",
                hint="pass --git-sha with the commit the package comes from",
            )
        return SourceInfo(None, commit, dirty=False, remote=None)
    head = _git(root, "rev-parse", "HEAD")
    if commit is None:
        if head is None:
            raise GeomlopsError(
                f"the repository {root} has no commit yet",
                hint="commit the package, or pass --git-sha",
            )
        commit = head.strip()
    status = _git(root, "status", "--porcelain", "--", str(package.resolve()))
    remote = _git(root, "remote", "get-url", "origin")
    return SourceInfo(
        root,
        commit,
        dirty=bool(status and status.strip()),
        remote=_web_url(remote) if remote else None,
    )


def package_files(package: Path, repo_root: Path | None) -> list[Path]:
    """The package's files, relative to it, as git would see them (sorted)."""
    if repo_root is not None:
        listed = _git(
            repo_root,
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            str(package.resolve()),
        )
        if listed is not None:
            base = package.resolve().relative_to(repo_root.resolve())
            files = {Path(p).relative_to(base) for p in listed.split("\0") if p}
            return sorted(f for f in files if (package / f).is_file())
    return sorted(p.relative_to(package) for p in walk(package) if p.is_file())


def package_digest(package: Path, repo_root: Path | None) -> str:
    """``sha256:<hex>`` over every file's path and bytes: the package's content identity."""
    digest = hashlib.sha256()
    for relative in package_files(package, repo_root):
        data = (package / relative).read_bytes()
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(f"{len(data)}\0".encode())
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"
