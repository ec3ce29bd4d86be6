"""``geomlops package validate``: every problem of a model package, each located and explained.

The checks, in the order a contributor would fix them: the folder (not a symbolic link),
required files, sizes and links, ``package.yaml`` (what the code reads), the package name
wherever it is written, ``mlm.json`` (offline against the MLM v1.6.0 schema, through the
catalog's validator, and every ``mlm:output`` of a kind the platform can post-process:
:mod:`geomlops.model.kinds`), the two agreeing, declared metrics and gates included
(:func:`geomlops.ml.spec.consistency_problems`, the same check the entry points run),
``MLproject`` (entry points, typed parameters, the files commands run, hyperparameter
defaults), the code loading ``package.yaml``, and the ``Dockerfile`` (sources in the package
folder, the build context). Every check runs whatever the others found, so the first report
holds every problem. Nothing is imported from or executed in the package: validation runs
in CI on untrusted contributions.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geomlops.catalog.extensions import MLM_SCHEMA
from geomlops.catalog.validation import stac_problems
from geomlops.errors import ValidationFailed
from geomlops.ml.spec import (
    MLM_FILE,
    PACKAGE_FILE,
    ModelPackage,
    PackageSpec,
    consistency_problems,
    read_spec,
)
from geomlops.model.io import OUTPUT_KEY, band_names, class_pairs
from geomlops.model.kinds import kinds_text, output_problems
from geomlops.model.runtimes import (
    ARTIFACT_TYPE_KEY,
    MLFLOW_PYFUNC,
    MODEL_ROLE,
    RUNTIMES,
    TORCH_EXPORT,
)
from geomlops.registration.contract import (
    ENTRY_POINTS,
    HYPERPARAMETERS,
    MLPROJECT_FILE,
    NAME_PATTERN,
    REQUIRED_FILES,
    SPEC_LOADER_MODULE,
)
from geomlops.registration.dockerfile import dockerfile_problems
from geomlops.registration.files import content_problems, folder_problems, reference_problem
from geomlops.registration.mlproject import (
    MLProject,
    mlflow_load_problem,
    mlproject_problems,
    read_mlproject,
)
from geomlops.registration.package_inputs import package_input_problems
from geomlops.registration.partial import partial_spec
from geomlops.registration.problems import Problem, validation_error
from geomlops.registration.source import repository_root
from geomlops.settings import Settings, get_settings


@dataclass
class ValidationResult:
    """The outcome: the problems found and, when they could be read, the parsed files."""

    path: Path
    repo_root: Path | None
    problems: list[Problem] = field(default_factory=list)
    spec: PackageSpec | None = None
    mlm: dict[str, Any] | None = None
    project: MLProject | None = None

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def name(self) -> str:
        """The package name (its folder's name until ``package.yaml`` is read)."""
        return self.spec.name if self.spec else self.path.name

    def raise_for_problems(self) -> None:
        """Raise :class:`ValidationFailed` listing every problem, if there is one."""
        if self.problems:
            raise validation_error(self.path, self.problems)


def validate_package(path: Path | str, settings: Settings | None = None) -> ValidationResult:
    """Check a package folder against the contract; never raises for a bad package."""
    settings = settings or get_settings()
    path = Path(path).absolute()
    result = ValidationResult(path=path, repo_root=repository_root(path))
    result.problems += folder_problems(path, result.repo_root)
    if result.problems:
        return result  # a missing folder or a link out: reading through it is the danger
    for name, why in REQUIRED_FILES.items():
        if not (path / name).is_file():
            result.problems.append(Problem(name, "", "the file is missing", why))
    result.problems += content_problems(path, settings.registration)
    # Each check below reads what it needs and reports on its own, so a broken file or
    # field hides no problem elsewhere: every problem is in the first report.
    result.problems += package_input_problems(path, settings.registration)
    result.spec, declared = _read_spec(path, result.problems)
    result.mlm = _read_mlm(path, result.problems)
    result.project, found = read_mlproject(path)
    result.problems += found
    result.problems += _name_problems(path, declared, result.mlm, result.project)
    if result.mlm is not None:
        result.problems += _mlm_problems(path, result.mlm)
    if declared is not None and result.mlm is not None:
        package = ModelPackage(path=path, spec=declared, mlm=result.mlm)
        result.problems += [
            _explained(_converted(p), package)
            for p in consistency_problems(package)
            if p.field != _MLM_NAME  # compared with the package name in _name_problems
        ]
    if result.project is not None:
        result.problems += _project_problems(path, result.project, result)
    result.problems += dockerfile_problems(path)
    return result


def validate_or_raise(path: Path | str, settings: Settings | None = None) -> ValidationResult:
    """:func:`validate_package`, raising :class:`ValidationFailed` when there is a problem."""
    result = validate_package(path, settings)
    result.raise_for_problems()
    return result


# --- package.yaml and mlm.json ------------------------------------------------------------
def _read_spec(
    path: Path, problems: list[Problem]
) -> tuple[PackageSpec | None, PackageSpec | None]:
    """The declaration if it is valid, and what of it is well typed (to check the rest with)."""
    if not (path / PACKAGE_FILE).is_file():
        return None, None
    try:
        spec = read_spec(path)
        return spec, spec
    except ValidationFailed as error:
        details = [p.removeprefix(f"{PACKAGE_FILE}: ") for p in error.problems]
        for detail in details or [error.message]:
            location, _, message = detail.partition(": ")
            if not message:
                location, message = "", detail
            problems.append(
                Problem(PACKAGE_FILE, location, message, "see model_packages/README.md section 2")
            )
    try:
        raw = yaml.safe_load((path / PACKAGE_FILE).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None, None
    return None, partial_spec(raw)


def _read_mlm(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    file = path / MLM_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.append(
            Problem(
                MLM_FILE,
                f"line {error.lineno}, column {error.colno}",
                f"is not valid JSON: {error.msg}",
                "fix the JSON syntax at that line",
            )
        )
        return None
    except UnicodeDecodeError as error:
        problems.append(Problem(MLM_FILE, "", f"is not UTF-8 text: {error}"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(MLM_FILE, "", "must be a JSON object (a STAC Item)"))
        return None
    return data


_MLM_NAME = "properties.mlm:name"


def _name_problems(
    path: Path, spec: PackageSpec | None, mlm: dict[str, Any] | None, project: MLProject | None
) -> list[Problem]:
    """Every place the package name is written, each against the folder's name.

    One reference for all of them: comparing some with ``package.yaml`` and others with the
    folder reported a half-renamed copy in two rounds (fix one name, meet the next).
    """
    problems: list[Problem] = []
    name = path.name
    if not NAME_PATTERN.match(name):
        problems.append(
            Problem(
                str(path),
                "",
                f"the folder name {name!r} is not a package name ({NAME_PATTERN.pattern})",
                "use lower-case letters, digits and hyphens, starting with a letter",
            )
        )
    props = mlm.get("properties") if mlm is not None else None
    written: list[tuple[str, str, Any]] = []
    if spec is not None:
        written.append((PACKAGE_FILE, "name", spec.name))
    if mlm is not None:
        written.append((MLM_FILE, "id", mlm.get("id")))
    if isinstance(props, dict):
        written.append((MLM_FILE, _MLM_NAME, props.get("mlm:name")))
    if project is not None:
        written.append((MLPROJECT_FILE, project.where("name"), project.data.get("name")))
    for file, location, value in written:
        if value != name:
            problems.append(
                Problem(
                    file,
                    location,
                    f"is {value!r}, the package folder is {name!r}",
                    "write the package name the same everywhere: the folder, package.yaml "
                    "name, mlm.json id and properties.mlm:name, MLproject name",
                )
            )
    return problems


def _mlm_problems(path: Path, mlm: dict[str, Any]) -> list[Problem]:
    """The item against its schemas (offline), the MLM version, and its code asset."""
    problems = [
        Problem(
            MLM_FILE,
            p.path,
            f"{p.message} (rule: {p.rule})",
            "`geomlops catalog validate` explains schema rules; README section 5 lists fields",
        )
        for p in stac_problems(mlm)
    ]
    problems += [
        Problem(
            MLM_FILE,
            f"properties.{field}",
            f"{message}: not an output the platform can post-process",
            f"the output kinds that exist: {kinds_text()}",
        )
        for field, message in _output_kind_problems(mlm)
    ]
    extensions = mlm.get("stac_extensions")
    if isinstance(extensions, list) and MLM_SCHEMA not in extensions:
        problems.append(
            Problem(
                MLM_FILE,
                "$.stac_extensions",
                f"does not declare the MLM extension the platform writes ({MLM_SCHEMA})",
                "list that schema URL in stac_extensions and use MLM v1.6.0 fields",
            )
        )
    assets = mlm["assets"] if isinstance(mlm.get("assets"), dict) else {}
    code = {k: a for k, a in assets.items() if "mlm:source_code" in (a or {}).get("roles", [])}
    if not code:
        problems.append(
            Problem(
                MLM_FILE,
                "$.assets",
                "no asset has the role mlm:source_code",
                'add {"href": "./main.py", "roles": ["mlm:source_code", "code"]}',
            )
        )
    problems += _runtime_problems(assets)
    for key, asset in code.items():
        href = asset.get("href")
        if isinstance(href, str) and "://" not in href:
            found = reference_problem(path, href, MLM_FILE, f"$.assets.{key}.href", "the href")
            if found:
                problems.append(found)
    return problems


def _output_kind_problems(mlm: dict[str, Any]) -> list[tuple[str, str]]:
    """What of ``mlm:output`` has no kind the platform post-processes (schema gaps aside)."""
    props = mlm.get("properties")
    outputs = props.get(OUTPUT_KEY) if isinstance(props, dict) else None
    if not isinstance(outputs, list) or not outputs:
        return []  # the MLM schema reports a missing or empty list itself
    return output_problems(outputs)


def _runtime_problems(assets: dict[str, Any]) -> list[Problem]:
    """The model asset must name a runtime the platform has (geomlops.model.runtimes).

    Serving and batch inference pick how to run a version from its ``mlm:artifact_type``:
    a ``torch.export`` program in process, an MLflow pyfunc model in the package's own
    environment; any other value could be registered and trained but never run.
    """
    models = {k: a for k, a in assets.items() if MODEL_ROLE in (a or {}).get("roles", [])}
    if not models:
        return [
            Problem(
                MLM_FILE,
                "$.assets",
                f"no asset has the role {MODEL_ROLE}",
                f"add the model asset with roles [{MODEL_ROLE!r}] and {ARTIFACT_TYPE_KEY} "
                f"({' or '.join(RUNTIMES)})",
            )
        ]
    problems = []
    for key, asset in models.items():
        value = asset.get(ARTIFACT_TYPE_KEY)
        if value not in RUNTIMES:
            problems.append(
                Problem(
                    MLM_FILE,
                    f"$.assets.{key}.{ARTIFACT_TYPE_KEY}",
                    f"is {value!r}: the platform runs {' and '.join(RUNTIMES)} models only",
                    f"{TORCH_EXPORT} for a torch.export program (geomlops.ml's train logs "
                    f"one), {MLFLOW_PYFUNC} for an MLflow pyfunc model run in the package's "
                    "own environment (model_packages/cloud-s2)",
                )
            )
    return problems


def _converted(problem: Any) -> Problem:
    return Problem(problem.file, problem.field, problem.message, problem.hint)


def _explained(problem: Problem, package: ModelPackage) -> Problem:
    """Name the bands or classes that differ, not only the two lists."""
    spec = package.spec
    if problem.location == "properties.mlm:input[0].bands":
        named = band_names(package.mlm_input)
        extra = [b for b in named if b not in spec.input.bands]
        missing = [b for b in spec.input.bands if b not in named]
        parts = []
        if extra:
            parts.append(
                f"declares band(s) {', '.join(map(str, extra))} that the code does not read"
            )
        if missing:
            parts.append(f"lacks band(s) {', '.join(missing)} that the code reads")
        if not parts:
            parts.append("lists the bands the code reads in another order")
        return Problem(
            problem.file,
            problem.location,
            f"{'; '.join(parts)} ({problem.message})",
            "mlm:input bands must equal package.yaml input.bands, in the same order",
        )
    if problem.location == "properties.mlm:output[0].classification:classes":
        output = package.mlm["properties"][OUTPUT_KEY][0]
        declared = [f"{c['value']}={c['name']}" for c in class_pairs(output)]
        code = [f"{c.value}={c.name}" for c in spec.output.classes]
        return Problem(
            problem.file,
            problem.location,
            f"classes {declared} differ from the classes the code writes {code}",
            "classification:classes must equal package.yaml output.classes (value and name)",
        )
    return problem


# --- MLproject and the code ---------------------------------------------------------------
def _project_problems(path: Path, project: MLProject, result: ValidationResult) -> list[Problem]:
    problems = mlproject_problems(project, path)
    if result.mlm is not None:
        problems += _hyperparameter_problems(project, result.mlm)
    problems += _loader_problems(path, project)
    found = mlflow_load_problem(path)  # MLflow's own reading, whatever else was found
    if found:
        problems.append(found)
    return problems


def _hyperparameter_problems(project: MLProject, mlm: dict[str, Any]) -> list[Problem]:
    props = mlm["properties"] if isinstance(mlm.get("properties"), dict) else {}
    hyper = props.get("mlm:hyperparameters")
    if not isinstance(hyper, dict) or "train" not in ENTRY_POINTS:
        return []
    train = project.parameters("train")
    problems = []
    for name in HYPERPARAMETERS:
        if name not in train or "default" not in train[name]:
            continue
        default, recorded = train[name]["default"], hyper.get(name)
        if not _same_number(default, recorded):
            problems.append(
                Problem(
                    "MLproject",
                    project.where(f"entry_points.train.parameters.{name}"),
                    f"default {default!r} differs from mlm.json "
                    f"properties.mlm:hyperparameters.{name} = {recorded!r}",
                    "the catalog describes the defaults training uses: make them equal",
                )
            )
    return problems


def _same_number(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def _loader_problems(path: Path, project: MLProject) -> list[Problem]:
    """The entry points must read package.yaml through geomlops.ml, not constants of their own.

    Checked statically (imports of the scripts the commands run, parsed, never executed).
    """
    scripts = [path / s for s in project.scripts if s.endswith(".py")]
    if not scripts:
        return []
    problems: list[Problem] = []
    imports_loader = False
    for script in scripts:
        try:
            tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
        except (SyntaxError, UnicodeDecodeError) as error:
            problems.append(
                Problem(
                    str(script.relative_to(path)),
                    f"line {getattr(error, 'lineno', '?')}",
                    f"is not valid Python: {error}",
                )
            )
            imports_loader = True  # unknown: say what is sure, not a guess about imports
            continue
        if any(_imports(node, SPEC_LOADER_MODULE) for node in ast.walk(tree)):
            imports_loader = True
    if imports_loader:
        return problems
    names = ", ".join(str(s.relative_to(path)) for s in scripts)
    return [
        Problem(
            names,
            "imports",
            f"no entry point script imports {SPEC_LOADER_MODULE}, so nothing shows the code "
            f"reads its bands and classes from {PACKAGE_FILE}",
            "build the entry points with geomlops.ml.cli.package_app, or load the declaration "
            "with geomlops.ml.spec.load_package (README section 2)",
        )
    ]


def _imports(node: ast.AST, module: str) -> bool:
    if isinstance(node, ast.ImportFrom) and node.module:
        return node.module == module or node.module.startswith(module + ".")
    if isinstance(node, ast.Import):
        return any(a.name == module or a.name.startswith(module + ".") for a in node.names)
    return False
