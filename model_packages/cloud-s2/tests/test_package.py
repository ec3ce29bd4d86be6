"""cloud-s2's own quick check: the shipped booster answers the platform's runtime contract.

Runs in the package's environment (s2cloudless and LightGBM; no torch, no servers), with
pytest (``python -m pytest tests``) or as a plain script (``python tests/test_package.py``):
the platform's test suite runs it the second way in the environment it builds from
``requirements.txt``, which holds no pytest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACKAGE))

import main  # noqa: E402
from cloud_model import BANDS, cloud_probability, detector_for  # noqa: E402

from geomlops.ml.spec import load_package  # noqa: E402


def _detector():  # type: ignore[no-untyped-def]
    return detector_for(str(main.booster_file()))


def test_the_declaration_is_consistent_and_reads_the_ten_s2cloudless_bands() -> None:
    package = load_package(PACKAGE)
    assert len(package.spec.input.bands) == BANDS
    assert package.spec.output.is_probability
    assert main.threshold(package) == 0.4
    mean, stddev = package.scaling()
    assert mean == [0.0] * BANDS and stddev == [10000.0] * BANDS  # value / 10000


def test_dark_ground_is_clear_and_bright_flat_reflectance_is_cloud() -> None:
    """A vegetated pixel (dark visible, bright NIR) against a thick cloud (bright, flat)."""
    ground = [0.12, 0.09, 0.05, 0.08, 0.30, 0.32, 0.10, 0.002, 0.18, 0.09]
    cloud = [0.60, 0.58, 0.57, 0.58, 0.62, 0.62, 0.30, 0.08, 0.45, 0.35]
    batch = np.zeros((2, BANDS, 4, 5), dtype="float32")
    batch[0] = np.asarray(ground, dtype="float32")[:, None, None]
    batch[1] = np.asarray(cloud, dtype="float32")[:, None, None]
    out = cloud_probability(_detector(), batch)
    assert out.shape == (2, 1, 4, 5) and out.dtype == np.float32
    assert ((out >= 0) & (out <= 1)).all()
    assert out[0].max() < 0.4 < out[1].min()


def test_a_batch_of_the_wrong_band_count_is_refused_with_the_bands_named() -> None:
    try:
        cloud_probability(_detector(), np.zeros((1, 13, 8, 8), dtype="float32"))
    except ValueError as error:
        assert "B8A" in str(error) and "(1, 13, 8, 8)" in str(error)
    else:
        raise AssertionError("13 bands were accepted")


def test_clear_sky_metrics_count_labelled_pixels_against_the_threshold() -> None:
    probability = np.array([[0.1, 0.5], [0.39, 0.9]], dtype="float32")
    label = np.array([[0, 1], [-1, 0]])
    missing = np.array([[False, False], [False, True]])
    metrics = main.clear_sky_metrics(probability, label, missing, 0.4)
    assert metrics["val_clear_agreement"] == 0.5  # (0.1 clear, 0.5 cloud); -1 and no data out
    assert abs(metrics["val_cloud_fraction"] - 1 / 3) < 1e-6
    assert abs(metrics["val_mean_probability"] - (0.1 + 0.5 + 0.39) / 3) < 1e-6


if __name__ == "__main__":
    tests = [value for name, value in sorted(globals().items()) if name.startswith("test_")]
    for test in tests:
        test()
        print(f"passed: {test.__name__}")
