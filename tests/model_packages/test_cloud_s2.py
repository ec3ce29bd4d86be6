"""cloud-s2 runs in its own environment: its framework is there and not in the platform's.

The pyfunc runtime is exercised for real: a model folder saved in the package environment,
answered by ``python -m geomlops.ml.serve_worker`` in that environment, over the pipe.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geomlops.errors import GeomlopsError
from geomlops.ml import serve_worker as wire
from geomlops.ml.raster import read_bands
from geomlops.ml.runtime import SubprocessModel, has_requirements
from geomlops.ml.spec import load_package
from geomlops.model.io import ModelIO
from geomlops.package_env import PackageEnv, package_env
from geomlops.sample_data import sample_data_root
from geomlops.settings import get_settings

PACKAGE = Path(__file__).resolve().parents[2] / "model_packages" / "cloud-s2"
CHIP = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"
FRAMEWORK = ("lightgbm", "s2cloudless")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env() -> PackageEnv:
    return package_env(PACKAGE, get_settings())


def _imports(python: Path | str, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, check=False)
    return done.returncode == 0


def test_the_framework_is_in_the_package_environment_only(env: PackageEnv) -> None:
    for module in FRAMEWORK:
        assert not _imports(sys.executable, module), f"{module} is in the main environment"
        assert _imports(env.python, module), f"{module} is missing from cloud-s2's environment"
    assert not _imports(env.python, "torch")  # nothing in it needs torch
    requirements = (PACKAGE / "requirements.txt").read_text()
    assert not has_requirements(requirements)  # so the runtime will not use this interpreter
    assert has_requirements("geomlops==0.1.0\nnumpy\n")


def test_the_package_s_own_test_passes_in_its_environment(env: PackageEnv) -> None:
    done = subprocess.run(
        [str(env.python), "tests/test_package.py"],
        cwd=PACKAGE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("passed: ") == 4


def test_frames_carry_arrays_and_end_cleanly() -> None:
    stream = io.BytesIO()
    batch = np.arange(24, dtype="float32").reshape(1, 2, 3, 4)
    wire.write_frame(stream, wire.BATCH, wire.to_npy(batch))
    stream.seek(0)
    frame = wire.read_frame(stream)
    assert frame is not None and frame[0] == wire.BATCH
    np.testing.assert_array_equal(wire.from_npy(frame[1]), batch)
    assert wire.read_frame(stream) is None  # end of input
    stream = io.BytesIO(wire.to_npy(batch)[:5])
    assert wire.read_frame(stream) is None  # a cut frame is the end, not garbage


@pytest.fixture(scope="module")
def model_folder(env: PackageEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pyfunc model as train logs it, saved to a folder in the package environment."""
    folder = tmp_path_factory.mktemp("cloud-model") / "model"
    script = (
        "import sys; sys.path.insert(0, '.'); import main, mlflow.pyfunc;"
        "from cloud_model import CloudProbability, BOOSTER_ARTIFACT;"
        f"mlflow.pyfunc.save_model({str(folder)!r}, python_model=CloudProbability(),"
        " artifacts={BOOSTER_ARTIFACT: str(main.booster_file())},"
        " code_paths=['cloud_model.py'], pip_requirements=['s2cloudless==1.7.3'])"
    )
    done = subprocess.run(
        [str(env.python), "-c", script], cwd=PACKAGE, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_a_pyfunc_model_answers_batches_from_its_environment(
    env: PackageEnv, model_folder: Path
) -> None:
    chip = sample_data_root() / CHIP
    if not chip.is_file():
        pytest.skip("sample data not present (set GEOMLOPS_SAMPLE_DATA)")
    package = load_package(PACKAGE)
    io_spec = ModelIO.from_item(package.mlm)
    bands = read_bands(chip, io_spec.bands).data[:, :64, :96]
    scaled = np.nan_to_num(bands / 10000.0).astype("float32")
    model = SubprocessModel("cloud-s2", str(model_folder), env.python, get_settings())
    try:
        answer = model(np.stack([scaled, scaled[:, ::-1]]))
        assert answer.shape == (2, 1, 64, 96) and answer.dtype == np.float32
        assert ((answer >= 0) & (answer <= 1)).all()
        np.testing.assert_allclose(answer[1, 0], answer[0, 0][::-1], atol=1e-6)  # per pixel
        assert io_spec.output_spec.threshold == 0.4
        assert (answer[0, 0] >= 0.4).mean() < 0.05  # the chip is a clear-sky scene
        with pytest.raises(GeomlopsError, match=r"failed on a batch.*B8A"):
            model(np.zeros((1, 13, 8, 8), dtype="float32"))
        assert model(scaled[np.newaxis, :, :8, :8]).shape == (1, 1, 8, 8)  # still up
    finally:
        model.close()
    assert model.process.poll() == 0  # ended by end of input, not killed


def test_a_worker_that_cannot_load_its_model_says_so(env: PackageEnv, tmp_path: Path) -> None:
    with pytest.raises(GeomlopsError, match=r"did not start: cannot load"):
        SubprocessModel("cloud-s2", str(tmp_path / "nothing"), env.python, get_settings())
