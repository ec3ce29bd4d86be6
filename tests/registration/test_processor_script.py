"""A generic processor's script is checked before it is stored: parsed, never run.

Each rule of the contract (geomlops.processors) has a script that breaks it, and the error
names the file and the field; parameters given at registration or at a run are declared
and coerced to their type, or refused by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geomlops.cli.main import app
from geomlops.errors import ValidationFailed
from geomlops.processors import (
    check_given,
    check_name,
    parse_assignments,
    resolve_parameters,
    sha256_file,
)
from geomlops.registration.processor_script import check_script

REPO = Path(__file__).resolve().parents[2]
GOOD = '''"""Doubles x."""
PARAMETERS = {"x": {"type": "number", "default": 1.5, "description": "a number"},
              "label": {"type": "string"}}


def process(inputs, params):
    return {"x": params["x"] * 2}
'''


def _script(tmp_path: Path, text: str, name: str = "proc.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["flood_area_by_country.py", "min_mapping_unit.py"])
def test_the_shipped_examples_keep_the_contract(name: str) -> None:
    spec = check_script(REPO / "processors" / name)
    assert spec.parameters and spec.description


def test_a_valid_script_gives_its_parameters_and_docstring(tmp_path: Path) -> None:
    spec = check_script(_script(tmp_path, GOOD))
    assert spec.parameters == {
        "x": {"type": "number", "default": 1.5, "description": "a number"},
        "label": {"type": "string"},
    }
    assert spec.description == "Doubles x."


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("PARAMETERS = {}\ndef process(inputs, params):\n  return {\n", "does not parse"),
        ("PARAMETERS = {}\ndef run(inputs, params):\n    return {}\n", "process(inputs, params)"),
        ("PARAMETERS = {}\ndef process(inputs):\n    return {}\n", "exactly two arguments"),
        ("PARAMETERS = {}\nasync def process(a, b):\n    return {}\n", "not async"),
        ("def process(inputs, params):\n    return {}\n", "declares no `PARAMETERS`"),
        ("PARAMETERS = dict(a=1)\ndef process(i, p):\n    return {}\n", "literal dict"),
        (
            "PARAMETERS = {'a': {'type': 'float'}}\ndef process(i, p):\n    return {}\n",
            "PARAMETERS['a'].type: must be one of number",
        ),
        (
            "PARAMETERS = {'a': {'type': 'integer', 'default': 'ten'}}\n"
            "def process(i, p):\n    return {}\n",
            "'ten' is not a integer",
        ),
        (
            "PARAMETERS = {'a': {'type': 'string', 'min': 1}}\ndef process(i, p):\n    return {}\n",
            "unknown field(s) min",
        ),
    ],
)
def test_each_broken_rule_is_named_with_its_file(tmp_path: Path, text: str, said: str) -> None:
    path = _script(tmp_path, text)
    with pytest.raises(ValidationFailed) as caught:
        check_script(path)
    message = str(caught.value)
    assert said in message and str(path) in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _script(tmp_path, "X = 1\n")
    with pytest.raises(ValidationFailed) as caught:
        check_script(path)
    assert len(caught.value.problems) == 2  # no entry point, no PARAMETERS


def test_only_python_files_are_processors(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=r"\.py"):
        check_script(_script(tmp_path, GOOD, "proc.txt"))


def test_parameters_are_declared_typed_and_complete() -> None:
    declared = {
        "x": {"type": "number", "default": 1.0},
        "n": {"type": "integer"},
        "on": {"type": "boolean", "default": False},
    }
    assert resolve_parameters(declared, {"n": "3", "on": "true"}, "-p") == {
        "x": 1.0,
        "n": 3,
        "on": True,
    }
    with pytest.raises(ValidationFailed, match=r"unknown parameter.*typo"):
        resolve_parameters(declared, {"n": "3", "typo": "1"}, "-p")
    with pytest.raises(ValidationFailed, match="-p x: 'big' is not a number"):
        resolve_parameters(declared, {"x": "big", "n": "1"}, "-p")
    with pytest.raises(ValidationFailed, match="n have no value and no default"):
        resolve_parameters(declared, {}, "-p")
    assert check_given(declared, {"x": "2"}, "--param") == {"x": 2.0}  # only what was given


def test_names_and_assignments() -> None:
    assert check_name("flood-area-by-country") == "flood-area-by-country"
    for bad in ("Flood", "a", "-x", "x_y", "x/y"):
        with pytest.raises(ValidationFailed, match="not valid"):
            check_name(bad)
    assert parse_assignments(["a=1", "b=x=y", "c="], "-p") == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValidationFailed, match="'nope' is not KEY=VALUE"):
        parse_assignments(["nope"], "-p")


def test_sha256_is_the_file_s(tmp_path: Path) -> None:
    path = _script(tmp_path, GOOD)
    assert sha256_file(path) == hashlib.sha256(GOOD.encode()).hexdigest()


def test_register_refuses_a_bad_script_before_reaching_any_service(tmp_path: Path) -> None:
    """No stack runs here: the script's faults are found first, and nothing is written."""
    path = _script(tmp_path, "def process(inputs, params):\n    return {}\n")
    result = CliRunner().invoke(app, ["processor", "register", str(path), "--name", "p1"])
    assert result.exit_code == 1
    assert "declares no `PARAMETERS`" in result.output and str(path) in result.output
    result = CliRunner().invoke(app, ["processor", "register", str(path), "--name", "Bad_Name"])
    assert result.exit_code == 1 and "processor name 'Bad_Name' is not valid" in result.output
    good = _script(tmp_path, GOOD, "good.py")
    result = CliRunner().invoke(
        app, ["processor", "register", str(good), "--name", "p1", "--param", "y=1"]
    )
    assert result.exit_code == 1 and "unknown parameter(s) y" in result.output
    result = CliRunner().invoke(
        app, ["processor", "register", str(good), "--name", "p1", "--param", "nokey"]
    )
    assert result.exit_code == 2 and "--param" in result.output
