"""Where a package's source comes from: its git repository, commit, and a content digest.

A package is identified by name and version; the *digest* of its files says whether two
registrations of that name and version are the same package. It is computed from the files
git would commit (tracked plus untracked-but-not-ignored), so a registration from a later
commit that did not touch the package is the same package, and a changed file under the same
version is a conflict. Outside a git repository every file counts but tool caches.

The source recorded is the repository's remote (a URL, or a path git can clone), the commit
and the package's folder in it: what training clones outside the package's image
(:mod:`geomlops.package_source`). A working folder is never recorded as the source.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from geomlops.errors import GeomlopsError
from geomlops.package_source import PackageSource
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
    """The commit a package is registered from, and the repository training clones it from."""

    repo_root: Path | None
    commit: str
    dirty: bool
    git_url: str
    """What ``git clone`` takes (the remote ``origin``, or ``--git-url``); never the
    registering machine's working folder as a ``file://`` URI."""
    path: str = ""
    """The package's folder inside the repository (POSIX; empty for the repository root)."""

    @property
    def source(self) -> PackageSource:
        """Where training finds the package outside its image (:mod:`geomlops.package_source`)."""
        return PackageSource(self.git_url, self.commit, self.path)

    def source_href(self) -> str:
        """A link to the package at this commit: a GitHub tree URL, else the repository URL."""
        web = _web_url(self.git_url)
        if web is not None:
            return f"{web}/tree/{self.commit}/{self.path}".rstrip("/")
        return self.git_url


def _web_url(remote: str) -> str | None:
    """``https://github.com/owner/repo`` from an https or ssh GitHub remote."""
    remote = remote.strip().removesuffix(".git")
    if remote.startswith("git@github.com:"):
        return "https://github.com/" + remote.removeprefix("git@github.com:")
    if remote.startswith("https://github.com/"):
        return remote
    return None


SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
"""``user@host:path``: git's short form of an ssh URL."""


def clone_url(remote: str, repo_root: Path) -> str:
    """``remote`` as training elsewhere can clone it: a relative path made absolute.

    A URL (``https://``, ``ssh://``, ``git@host:…``) is kept as written. A remote given as a
    relative path is relative to the repository, so it is resolved against it.
    """
    remote = remote.strip()
    if "://" in remote or SCP_LIKE.match(remote):
        return remote
    return str((repo_root / remote).resolve())


def origin_url(repo_root: Path) -> str | None:
    """The remote ``origin`` of the repository at ``repo_root``, when it has one."""
    remote = _git(repo_root, "remote", "get-url", "origin")
    return remote.strip() if remote and remote.strip() else None


def source_info(package: Path, commit: str | None = None, git_url: str | None = None) -> SourceInfo:
    """Repository URL, commit (``commit`` or HEAD), folder, and uncommitted changes.

    A package is registered from its git repository, and the source recorded is one
    training can clone: the remote ``origin`` (or ``git_url``). Raises, naming the fix,
    when the package is not in a repository, the repository has no commit, or no remote.
    """
    root = repository_root(package)
    if root is None:
        raise GeomlopsError(
            f"{package} is not inside a git repository, so training could not fetch its code",
            hint="a package is a git repository: `git init`, commit, `git remote add origin "
            "URL`, push, then register",
        )
    head = _git(root, "rev-parse", "HEAD")
    if commit is None:
        if head is None:
            raise GeomlopsError(
                f"the repository {root} has no commit yet",
                hint="commit the package, or pass --git-sha",
            )
        commit = head.strip()
    if git_url is None:
        remote = origin_url(root)
        if remote is None:
            raise GeomlopsError(
                f"the repository {root} has no remote `origin`, so nothing records where "
                "training can fetch the package from",
                hint="add the repository it is pushed to: `git remote add origin URL` and "
                "`git push`; or name it with --git-url URL",
            )
        git_url = remote
    url = clone_url(git_url, root)
    status = _git(root, "status", "--porcelain", "--", str(package.resolve()))
    relative = package.resolve().relative_to(root.resolve()).as_posix()
    return SourceInfo(
        root,
        commit,
        dirty=bool(status and status.strip()),
        git_url=url,
        path="" if relative == "." else relative,
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
