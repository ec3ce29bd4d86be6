"""The distribution, its import namespace, its settings and its CLI wiring."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.settings import S3Settings, Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_component_folder_is_a_listed_package() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            dotted = ".".join([package, *relative.parts])
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            owner = max(
                (p for p, f in setuptools["package-dir"].items() if init.is_relative_to(REPO / f)),
                key=lambda p: len(setuptools["package-dir"][p]),
            )
            if owner == package:
                assert dotted in listed, f"{dotted} ({init.parent}) missing from pyproject"
    for dotted in listed:
        importlib.import_module(dotted)


def test_components_import_under_one_namespace_and_no_top_level_transformers() -> None:
    import geomlops.catalog
    import geomlops.transformers

    assert Path(geomlops.catalog.__file__).parent == REPO / "catalog"
    assert Path(geomlops.transformers.__file__).parent == REPO / "transformers"
    hugging_face = sys.modules.get("transformers")
    assert hugging_face is None or "geomlops" not in str(getattr(hugging_face, "__file__", ""))


def test_settings_come_from_geomlops_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    monkeypatch.setenv("GEOMLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("GEOMLOPS_S3_BUCKET_PREDICTIONS", "maps")
    monkeypatch.setenv("GEOMLOPS_MLFLOW_PORT", "5001")
    settings = get_settings()
    assert settings.stack.home == tmp_path / "state"
    assert settings.s3.buckets["predictions"] == "maps"
    assert settings.mlflow.port == 5001


def test_home_defaults_to_dot_geomlops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOMLOPS_HOME", raising=False)
    assert Settings().stack.home == Path("~/.geomlops").expanduser()


def test_half_a_key_pair_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMLOPS_S3_ACCESS_KEY", "only-the-access-key")
    with pytest.raises(ValidationError, match="GEOMLOPS_S3_SECRET_KEY"):
        S3Settings()


def test_out_of_range_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMLOPS_STAC_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()


def test_cli_lists_the_stack_verbs() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("up", "down", "status", "env", "demo"):
        assert verb in result.stdout


def test_unknown_option_exits_2_and_names_it() -> None:
    result = CliRunner().invoke(app, ["status", "--no-such-flag"])
    assert result.exit_code == 2
    assert "--no-such-flag" in result.stderr


def test_env_before_up_says_to_run_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    monkeypatch.setenv("GEOMLOPS_HOME", str(tmp_path / "never-started"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 1
    assert "geomlops up" in result.stderr


def test_external_services_resolve_without_a_local_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None
) -> None:
    from geomlops.connections import get_connections
    from geomlops.errors import StackNotRunning

    monkeypatch.setenv("GEOMLOPS_HOME", str(tmp_path / "never-started"))
    monkeypatch.setenv("GEOMLOPS_STAC_URL", "https://stac.example.org")
    monkeypatch.setenv("GEOMLOPS_MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    conn = get_connections()
    assert conn.stac_url == "https://stac.example.org"
    assert conn.mlflow_tracking_uri == "https://mlflow.example.org"
    with pytest.raises(StackNotRunning, match="geomlops up"):
        conn.db_url("pgstac")


def test_one_s3_client_per_endpoint_and_keys() -> None:
    from geomlops.connections import Connections

    def conn(secret: str) -> Connections:
        return Connections(
            resolved={
                "s3_endpoint_url": "http://127.0.0.1:9",
                "s3_access_key": "key",
                "s3_secret_key": secret,
                "s3_region": "us-east-1",
            }
        )

    client = conn("one").s3_client()
    assert conn("one").s3_client() is client  # another Connections, the same store and keys
    other = conn("two").s3_client()
    assert other is not client
    assert other.meta.endpoint_url == "http://127.0.0.1:9"


def test_readme_layout_table_matches_the_folders() -> None:
    """Every top-level folder is in the README's layout table, with its import name."""
    import re
    import subprocess

    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 1)]
    rows = dict(re.findall(r"^\| `([^`]+)/` \| (`[^`]+`|—) \|", layout, flags=re.M))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {path.split("/", 1)[0] for path in tracked if "/" in path}
    folders = {f for f in folders if not f.startswith(".")}
    assert set(rows) == folders
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        assert rows[folder] == f"`{package}`"
