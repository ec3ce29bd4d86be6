"""The checkable parts of the model package contract (``model_packages/README.md``).

The README explains the contract to people; this module is its executable form for the
validator, so each rule the validator enforces is written down once. The ``package.yaml`` ↔
``mlm.json`` rules live in :mod:`geomlops.ml.spec`, which the package code itself runs.
"""

from __future__ import annotations

import re

from geomlops.ml.spec import MLM_FILE, PACKAGE_FILE

MLPROJECT_FILE = "MLproject"
DOCKERFILE = "Dockerfile"
README_FILE = "README.md"

# Every file a package must have, with why (the hint when it is missing).
REQUIRED_FILES: dict[str, str] = {
    MLPROJECT_FILE: "declare the entry points train, evaluate and predict (README section 3)",
    PACKAGE_FILE: "declare the bands, classes and patch size the code reads (README section 2)",
    MLM_FILE: "describe the model with the STAC MLM extension v1.6.0 (README section 5)",
    DOCKERFILE: "add the runtime image, FROM a CUDA base image (README section 7)",
    README_FILE: "describe data, split, metrics reached and limitations",
}

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")

# MLflow's parameter types; anything else makes `mlflow run` misbehave.
PARAMETER_TYPES = frozenset({"string", "float", "path", "uri"})

# Entry point -> parameters every package must declare, with their MLflow types.
ENTRY_POINTS: dict[str, dict[str, str]] = {
    "train": {
        "data": "string",
        "output": "string",
        "epochs": "float",
        "batch_size": "float",
        "learning_rate": "float",
        "stride": "float",
        "seed": "float",
        "device": "string",
    },
    "evaluate": {"model": "string", "data": "string", "output": "string", "device": "string"},
    "predict": {
        "model": "string",
        "input": "path",
        "output": "string",
        "overlap": "float",
        "device": "string",
    },
}

# `train` parameters whose defaults must equal `mlm:hyperparameters` in mlm.json.
HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate", "stride", "seed")

# Script types an entry point command may run; a token with one of these suffixes (or with a
# slash) is a file of the package and must exist inside it.
SCRIPT_SUFFIXES = (".py", ".sh", ".R", ".r", ".jl", ".ipynb")

# MLproject keys naming environment files, which must also stay inside the package.
ENVIRONMENT_FILE_KEYS = ("conda_env", "python_env")

# The shared ML code that loads package.yaml; a package's entry points import it.
SPEC_LOADER_MODULE = "geomlops.ml"
