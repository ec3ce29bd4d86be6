"""Load a model version for inference: the one function serving and batch inference share.

:func:`load_model` returns a :class:`LoadedModel`: a callable taking a float32 batch
``N x C x H x W`` *after* the MLM item's normalisation and answering float32
``N x K x H x W`` scores (a class mask's logits, or the one channel of a probability).
The model asset's ``mlm:artifact_type`` (:mod:`geomlops.model.runtimes`) picks how:

- ``torch.export.save`` runs in this process: the program is downloaded once into a cache
  keyed by its storage location, loaded with torch on the best device;
- ``mlflow.pyfunc`` runs in a subprocess in the package's environment
  (:mod:`geomlops.ml.serve_worker`), which loads the MLflow model and answers batches over
  a pipe in ``.npy`` frames. Its interpreter is, in this order: this process's own when it
  holds every requirement the model's package declares (the package's image on a cluster:
  its Dockerfile installed them); ``GEOMLOPS_SERVING_MODEL_PYTHON`` when set (what
  ``geomlops serve`` gives the model component whose environment it prepared); else the
  package environment built from the requirements logged with the model
  (:func:`geomlops.package_env.requirements_env`: training's, found in the cache).

Tiling, blending and the softmax a class mask's logits need are
:func:`geomlops.ml.tiling.predict_probabilities`' (it feeds a loaded model numpy batches);
post-processing follows the output's kind (:mod:`geomlops.model.kinds`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from geomlops.artifacts import download, read_object
from geomlops.connections import get_connections
from geomlops.errors import ConfigError, GeomlopsError
from geomlops.ml import serve_worker as wire
from geomlops.model.runtimes import (
    ENV_REQUIREMENTS_FILE,
    MLFLOW_PYFUNC,
    RUNTIMES,
    TORCH_EXPORT,
    TORCH_MODEL_FILE,
)
from geomlops.settings import Settings

log = logging.getLogger(__name__)

WORKER_MODULE = "geomlops.ml.serve_worker"
SDK_DISTRIBUTION = "geomlops"


class LoadedModel(Protocol):
    """A loaded model version: normalised batch in, its scores out (numpy, N x K x H x W)."""

    takes_numpy: bool
    """True: :func:`geomlops.ml.tiling.predict_probabilities` feeds it numpy batches."""
    runtime: str
    device: str
    """Where it runs (``cpu``, ``cuda:0``; ``subprocess:<pid>`` for a pyfunc worker)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def load_model(
    name: str,
    artifact_uri: str,
    runtime: str,
    settings: Settings,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load the MLflow model folder at ``artifact_uri`` (``s3://…``/``mlflow-artifacts:/…``).

    ``name`` names the model in messages and cache files; ``device``: ``auto`` (CUDA when
    present), ``cpu``, ``cuda``, ``cuda:N`` (a pyfunc model chooses its own).
    """
    if runtime == TORCH_EXPORT:
        return TorchModel.load(name, artifact_uri, settings, device=device, cache_dir=cache_dir)
    if runtime == MLFLOW_PYFUNC:
        python = model_python(name, artifact_uri, settings)
        return SubprocessModel(name, artifact_uri, python, settings)
    raise ConfigError(
        f"{name}: runtime {runtime!r} is not one the platform runs ({', '.join(RUNTIMES)})"
    )


# --- torch.export, in process --------------------------------------------------------------
def cached_model_file(name: str, artifact_uri: str, folder: Path) -> Path:
    """Where the exported program at ``artifact_uri`` is kept between loads.

    Keyed by the storage location, not only by name and version: every registry counts
    1, 2, 3, and a cache keyed by version alone served one registry's weights as another's.
    """
    location = hashlib.sha256(artifact_uri.rstrip("/").encode()).hexdigest()[:16]
    return folder / f"{name}-{location}.pt2"


class TorchModel:
    """A ``torch.export`` program answering its raw scores (a class mask's logits).

    Which scores get a softmax is the output kind's business
    (:func:`geomlops.ml.tiling.predict_probabilities`), not the runtime's.
    """

    takes_numpy = True
    runtime = TORCH_EXPORT

    def __init__(self, module: Any, device: Any) -> None:
        self.module = module
        self.torch_device = device
        self.device = str(device)

    @classmethod
    def load(
        cls,
        name: str,
        artifact_uri: str,
        settings: Settings,
        *,
        device: str = "auto",
        cache_dir: Path | None = None,
    ) -> TorchModel:
        """Download (once) and load the program on ``device``."""
        import torch

        folder = cache_dir or Path(tempfile.gettempdir()) / "geomlops-models"
        target = cached_model_file(name, artifact_uri, folder)
        if not target.is_file():
            download(f"{artifact_uri.rstrip('/')}/{TORCH_MODEL_FILE}", target, settings=settings)
        chosen = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        return cls(torch.export.load(str(target)).module().to(chosen), chosen)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            scores = self.module(
                torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device)
            )
            return scores.float().cpu().numpy()

    def close(self) -> None:
        """Nothing to release but memory."""


# --- mlflow.pyfunc, in the package's environment -------------------------------------------
def _requirement_names(text: str) -> list[str]:
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match and match.group(0).lower() != SDK_DISTRIBUTION:
            names.append(match.group(0))
    return names


def has_requirements(text: str) -> bool:
    """Whether this interpreter has every distribution ``text`` (a requirements.txt) names.

    True in the package's image, whose Dockerfile installed them; the versions are the
    image's business (its build resolved the same file).
    """
    for name in _requirement_names(text):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def model_python(name: str, artifact_uri: str, settings: Settings) -> Path:
    """The interpreter a pyfunc model runs under (see the module docstring for the order)."""
    uri = f"{artifact_uri.rstrip('/')}/{ENV_REQUIREMENTS_FILE}"
    text = read_object(uri, settings=settings, missing_ok=True)
    if text is None:
        raise GeomlopsError(
            f"{name}: the model at {artifact_uri} carries no {ENV_REQUIREMENTS_FILE}, so "
            "nothing says which environment runs it",
            hint="its package's train entry point logs the package's requirements.txt into "
            f"the model as {ENV_REQUIREMENTS_FILE}; retrain it with the current package",
        )
    requirements = text.decode("utf-8")
    if has_requirements(requirements):
        return Path(sys.executable)
    if settings.serving.model_python is not None:
        return settings.serving.model_python
    try:
        from geomlops.package_env import requirements_env
    except ImportError as error:  # the serving image: no uv, no packaging
        raise ConfigError(
            f"{name}: this environment lacks the model's requirements and cannot build "
            f"its environment ({error})",
            hint="run the model in its package's image, or set GEOMLOPS_SERVING_MODEL_PYTHON "
            "to the interpreter of its environment (`geomlops serve` does so locally)",
        ) from None
    with tempfile.TemporaryDirectory(prefix="geomlops-env-") as folder:
        file = Path(folder) / "requirements.txt"
        file.write_text(requirements, encoding="utf-8")
        return requirements_env(name, file, settings).python


def _worker_env(settings: Settings) -> dict[str, str]:
    """The environment, plus where MLflow and S3 are (a model folder on disk needs neither)."""
    try:
        services = get_connections(settings).env()
    except GeomlopsError as error:
        log.debug("the model worker gets no service addresses: %s", error)
        services = {}
    env = {**os.environ, **services, "PYTHONUNBUFFERED": "1"}
    for key in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):
        env.pop(key, None)
    return env


class SubprocessModel:
    """A pyfunc model answering batches from :mod:`geomlops.ml.serve_worker` over a pipe."""

    takes_numpy = True
    runtime = MLFLOW_PYFUNC

    def __init__(self, name: str, artifact_uri: str, python: Path, settings: Settings) -> None:
        self.name = name
        self.python = python
        self._lock = threading.Lock()
        log.info("starting %s's worker with %s", name, python)
        self.process = subprocess.Popen(
            [str(python), "-m", WORKER_MODULE, artifact_uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(settings),
        )
        self._finalizer = weakref.finalize(self, _stop, self.process)
        self.device = f"subprocess:{self.process.pid}"
        frame = wire.read_frame(self._stdout)
        if frame is None or frame[0] != wire.READY:
            why = frame[1].decode(errors="replace") if frame else "it exited"
            self.close()
            raise GeomlopsError(
                f"{name}: the model worker ({python} -m {WORKER_MODULE}) did not start: {why}",
                hint="its stderr (above, or the component's log) says why",
            )

    @property
    def _stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None  # noqa: S101 - opened with PIPE
        return self.process.stdin

    @property
    def _stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None  # noqa: S101 - opened with PIPE
        return self.process.stdout

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype="float32")
        with self._lock:
            try:
                wire.write_frame(self._stdin, wire.BATCH, wire.to_npy(batch))
            except (BrokenPipeError, ValueError):
                frame = None
            else:
                frame = wire.read_frame(self._stdout)
        if frame is None:
            raise GeomlopsError(
                f"{self.name}: the model worker died (exit status {self.process.poll()})"
            )
        kind, payload = frame
        if kind == wire.ERROR:
            raise GeomlopsError(f"{self.name}: the model failed on a batch: {payload.decode()}")
        answer = wire.from_npy(payload)
        if (
            answer.ndim != 4
            or answer.shape[0] != batch.shape[0]
            or answer.shape[2:] != batch.shape[2:]
        ):
            raise GeomlopsError(
                f"{self.name}: the model answered shape {answer.shape} for a batch of "
                f"{batch.shape}; N x K x H x W with the batch's N, H, W is the contract"
            )
        return answer

    def close(self) -> None:
        """End the worker (end of input, then a kill if it lingers)."""
        self._finalizer()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
