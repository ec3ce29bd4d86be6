"""A registered package's code, checked out from its recorded git source (no image here).

Real git repositories made by each test: a working repository pushing to a bare `origin`,
which is what the catalog records and what the checkout clones.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.package_source import GitError, PackageSource, checkout


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "push", "-q", "origin", "main")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A working repository and the URL of its bare `origin`."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "tests@geomlops.invalid")
    git(work, "config", "user.name", "geomlops tests")
    git(work, "remote", "add", "origin", str(origin))
    return work, str(origin)


def test_the_package_folder_at_the_commit_is_checked_out_once(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    work, url = repo
    first = commit(work, {"pkgs/lake/package.yaml": "name: lake\nversion: 0.1.0\n"}, "one")
    commit(work, {"pkgs/lake/package.yaml": "name: lake\nversion: 0.2.0\n"}, "two")
    home = tmp_path / "home"
    folder = checkout(PackageSource(url, first, "pkgs/lake"), home)
    assert folder.name == "lake" and folder.is_relative_to(home / "packages")
    assert (folder / "package.yaml").read_text() == "name: lake\nversion: 0.1.0\n"
    assert not (folder.parents[1] / ".git").exists()  # a tree, not a working copy
    stamp = (folder / "package.yaml").stat().st_mtime_ns
    again = checkout(PackageSource(url, first[:10], "pkgs/lake"), home)  # a short hash
    assert again == folder and (again / "package.yaml").stat().st_mtime_ns == stamp


def test_a_commit_pushed_later_is_fetched(repo: tuple[Path, str], tmp_path: Path) -> None:
    work, url = repo
    first = commit(work, {"package.yaml": "name: lake\nversion: 0.1.0\n"}, "one")
    home = tmp_path / "home"
    assert (checkout(PackageSource(url, first), home) / "package.yaml").is_file()
    later = commit(work, {"package.yaml": "name: lake\nversion: 0.2.0\n"}, "two")
    folder = checkout(PackageSource(url, later), home)
    assert "0.2.0" in (folder / "package.yaml").read_text()


def test_a_commit_not_in_the_repository_is_refused(repo: tuple[Path, str], tmp_path: Path) -> None:
    work, url = repo
    commit(work, {"package.yaml": "name: lake\n"}, "one")
    with pytest.raises(NotFoundError, match="is not in the package repository") as caught:
        checkout(PackageSource(url, "ab" * 20), tmp_path / "home")
    assert "push that commit" in str(caught.value.hint)


def test_a_folder_missing_at_the_commit_is_refused(repo: tuple[Path, str], tmp_path: Path) -> None:
    work, url = repo
    sha = commit(work, {"package.yaml": "name: lake\n"}, "one")
    with pytest.raises(NotFoundError, match="has no folder 'pkgs/other'"):
        checkout(PackageSource(url, sha, "pkgs/other"), tmp_path / "home")


def test_an_unreachable_repository_and_an_escaping_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="cannot clone the package repository"):
        checkout(PackageSource(str(tmp_path / "nowhere.git"), "ab" * 20), tmp_path / "home")
    with pytest.raises(GeomlopsError, match="not a relative path"):
        PackageSource("https://example.org/x.git", "ab" * 20, "../outside")
