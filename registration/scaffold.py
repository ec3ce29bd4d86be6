"""``geomlops package new``: a complete, valid model package, ready to be its own repository.

The files come from the templates in ``templates/package/`` (``NAME.tmpl``, placeholders in
``string.Template`` syntax), filled with what the contributor chose: name, framework, bands,
classes and the training scene. Two facts are measured rather than templated: the z-score
statistics of the training block (``mlm:input[0].value_scaling``, from the scene, as
``python -m geomlops.ml.scaling`` computes them) and the model's parameter count. The
requirements pin the SDK at this platform's version and torch as this platform pins it (read
from the installed distribution, whose ``pyproject.toml`` is the one place they are written).

The package is written into a temporary folder beside the destination and renamed into
place when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from geomlops import __version__
from geomlops.errors import ConfigError, GeomlopsError
from geomlops.registration.contract import NAME_PATTERN

TEMPLATES = files("geomlops.registration") / "templates" / "package"
TASKS = ("semantic-segmentation",)
"""Tasks a package can be generated for (the SDK's runner trains semantic segmentation)."""


@dataclass(frozen=True)
class Framework:
    """What a framework adds to a package: its model file, requirements and description."""

    model_template: str
    requirements: tuple[str, ...]
    architecture: str


FRAMEWORKS: dict[str, Framework] = {
    "pytorch": Framework("model_pytorch.py.tmpl", (), "U-Net (small, 4 levels, plain PyTorch)"),
    "terratorch": Framework(
        "model_terratorch.py.tmpl",
        # terratorch >=1.2.12 needs Python >=3.12 (torchgeo 0.9); its torchvision must match
        # the platform's CUDA torch build (a CPU-only pairing fails: `torchvision::nms`).
        ("torchvision==0.28.0", "terratorch==1.2.11"),
        "U-Net (ResNet-18 encoder, terratorch)",
    ),
}

HYPERPARAMETERS: dict[str, int | float] = {
    "epochs": 12,
    "batch_size": 16,
    "learning_rate": 0.001,
    "stride": 48,
    "seed": 0,
}
"""Defaults of the train entry point, written to MLproject and mlm.json alike."""


@dataclass(frozen=True)
class PackageChoices:
    """What ``geomlops package new`` asks; the defaults make the Sentinel-1 water example."""

    name: str
    framework: str = "pytorch"
    task: str = "semantic-segmentation"
    version: str = "0.1.0"
    bands: tuple[str, ...] = ("VV", "VH")
    classes: tuple[str, ...] = ("not_water", "water")
    image: str = "imagery/sen1floods11/Spain_7370579_S1Hand.tif"
    label: str = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
    label_nodata: int = -1
    nodata: float | None = None
    patch_size: int = 64
    input_name: str = "input"
    output_name: str = "mask"
    title: str = ""
    notes: list[str] = field(default_factory=list, compare=False)

    def problems(self) -> list[str]:
        """Every invalid choice, named by its option."""
        found = []
        if not NAME_PATTERN.match(self.name):
            found.append(f"NAME {self.name!r} is not a package name ({NAME_PATTERN.pattern})")
        if self.framework not in FRAMEWORKS:
            found.append(f"--framework {self.framework!r}: choose one of {', '.join(FRAMEWORKS)}")
        if self.task not in TASKS:
            found.append(f"--task {self.task!r}: choose one of {', '.join(TASKS)}")
        if not self.bands or len(set(self.bands)) != len(self.bands):
            found.append(f"--bands {','.join(self.bands)!r}: give distinct band names")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            found.append(f"--classes {','.join(self.classes)!r}: give two or more distinct names")
        for name in self.classes:
            if not re.match(r"^[a-z][a-z0-9_]*$", name):
                found.append(f"--classes: {name!r} is not lower_snake_case (used in metric names)")
        if self.patch_size % 8:
            found.append(f"--patch-size {self.patch_size}: must be a multiple of 8")
        return found


def sdk_requirements() -> list[str]:
    """``geomlops==<version>`` and torch as this platform pins it (its base dependencies)."""
    pins = []
    for requirement in metadata.requires("geomlops") or []:
        if ";" in requirement:
            continue  # an extra's
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()
        if name == "torch":
            pins.append(requirement.replace(" ", ""))
    if len(pins) != 1:
        raise GeomlopsError(
            "the installed geomlops distribution does not pin torch",
            hint="reinstall geomlops (`make install`)",
        )
    return [f"geomlops=={__version__}", *sorted(pins)]


def _render(template: str, values: dict[str, Any]) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def _class_lines(classes: tuple[str, ...]) -> str:
    return "\n".join(
        f"    - {{value: {value}, name: {name}, description: {name.replace('_', ' ')}}}"
        for value, name in enumerate(classes)
    )


def _mlm(choices: PackageChoices, framework: Framework) -> dict[str, Any]:
    mlm = json.loads((TEMPLATES / "mlm.json.tmpl").read_text(encoding="utf-8"))
    title = choices.title or f"{choices.name}: {' / '.join(choices.classes)} segmentation"
    props = mlm["properties"]
    mlm["id"] = choices.name
    props.update(
        {
            "title": title,
            "description": f"{title}. Generated by `geomlops package new`; describe the data, "
            "the split and the limitations here and in README.md.",
            "version": choices.version,
            "bands": [{"name": band} for band in choices.bands],
            "mlm:name": choices.name,
            "mlm:architecture": framework.architecture,
            "mlm:batch_size_suggestion": 8,
        }
    )
    props["mlm:framework_version"] = next(
        (p.split("==")[1].split(",")[0] for p in sdk_requirements() if p.startswith("torch==")),
        props["mlm:framework_version"],
    )
    size = choices.patch_size
    inp = props["mlm:input"][0]
    inp.update({"name": choices.input_name, "bands": list(choices.bands)})
    inp.pop("value_scaling", None)  # measured from the scene once the package is written
    inp["input"]["shape"] = [-1, len(choices.bands), size, size]
    out = props["mlm:output"][0]
    out["name"] = choices.output_name
    out["result"]["shape"] = [-1, len(choices.classes), size, size]
    out["classification:classes"] = [
        {"value": value, "name": name, "description": name.replace("_", " ")}
        for value, name in enumerate(choices.classes)
    ]
    props["mlm:hyperparameters"] = {
        **props["mlm:hyperparameters"],
        **HYPERPARAMETERS,
        "patch_size": size,
        "overlap": 16,
    }
    mlm["assets"]["model"]["bands"] = [{"name": band} for band in choices.bands]
    return mlm


def _parameter_count(model_file: Path, bands: int, classes: int) -> int | None:
    """Parameters of the generated model, or None when its framework is not installed here."""
    spec = importlib.util.spec_from_file_location(f"_geomlops_new_{model_file.stem}", model_file)
    assert spec is not None and spec.loader is not None  # noqa: S101 - a .py file we wrote
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:
        return None
    finally:
        sys.modules.pop(spec.name, None)
    model = module.build_model(bands, classes)
    return int(sum(p.numel() for p in model.parameters()))


def write_package(choices: PackageChoices, dest: Path, data: str | None = None) -> list[Path]:
    """Write the package ``choices`` describe into the new folder ``dest``; its files.

    ``data`` is where the training scene lies (default: the platform's sample data); the
    value scaling is computed from it.
    """
    problems = choices.problems()
    if problems:
        raise ConfigError("cannot create the package: " + "; ".join(problems))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(
            f"{dest} already exists and is not empty",
            hint="choose a new folder (DEST), or remove that one",
        )
    framework = FRAMEWORKS[choices.framework]
    values = {
        "name": choices.name,
        "version": choices.version,
        "input_name": choices.input_name,
        "output_name": choices.output_name,
        "bands": json.dumps(list(choices.bands)),
        "nodata": "null" if choices.nodata is None else choices.nodata,
        "patch_size": choices.patch_size,
        "classes": _class_lines(choices.classes),
        "image": choices.image,
        "label": choices.label,
        "label_nodata": choices.label_nodata,
        "requirements": "\n".join([*sdk_requirements(), *framework.requirements]),
        "base_image": _base_image(),
        "framework": choices.framework,
        **HYPERPARAMETERS,
    }
    outputs = {
        "package.yaml": "package.yaml.tmpl",
        "MLproject": "MLproject.tmpl",
        "Dockerfile": "Dockerfile.tmpl",
        "requirements.txt": "requirements.txt.tmpl",
        "main.py": "main.py.tmpl",
        "model.py": framework.model_template,
        "README.md": "README.md.tmpl",
        "tests/test_package.py": "tests/test_package.py.tmpl",
        ".gitignore": "gitignore.tmpl",
        ".dockerignore": "dockerignore.tmpl",
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{choices.name}-", dir=dest.parent)) / choices.name
    try:
        for target, template in outputs.items():
            path = tmp / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_render(template, values), encoding="utf-8")
        mlm = _mlm(choices, framework)
        count = _parameter_count(tmp / "model.py", len(choices.bands), len(choices.classes))
        if count is None:
            choices.notes.append(
                f"{choices.framework} is not installed here: set mlm:total_parameters in "
                "mlm.json after installing requirements.txt"
            )
        mlm["properties"]["mlm:total_parameters"] = count or 0
        (tmp / "mlm.json").write_text(json.dumps(mlm, indent=2) + "\n", encoding="utf-8")
        from geomlops.ml.scaling import write_statistics

        write_statistics(tmp, data)
        shutil.rmtree(tmp / "__pycache__", ignore_errors=True)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())


def _base_image() -> str:
    from geomlops.settings import get_settings

    return get_settings().registration.base_image
