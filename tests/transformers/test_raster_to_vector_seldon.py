"""The raster-to-vector OUTPUT_TRANSFORMER under the real seldon-core 1.17.1 wrapper.

Starts ``seldon-core-microservice`` (through the loopback launcher) from the serving
environment ``.venv-serving`` and talks to it over HTTP, as the graph's executor does.
The payload contract itself is tested in-process here too, since it runs in both
environments.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import rasterio.features
from shapely.geometry import shape

from geomlops.errors import ValidationFailed
from geomlops.model.kinds import OutputKind, OutputSpec
from geomlops.sample_data import fetch
from geomlops.transformers.postprocess import RasterPrediction, postprocess
from geomlops.transformers.raster_to_vector import mask_to_geojson, payload, read_mask

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serving" / "bin" / "python"
COMPONENT = "geomlops.transformers.seldon_raster_to_vector.RasterToVector"
LABEL_KEY = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
WATER_CLASSES = [{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}]
OPTIONS = {"min_area_m2": 500.0, "simplify_tolerance_m": 10.0, "skip_values": [0]}
PARAMETERS = [
    {"name": "min_area_m2", "value": "500", "type": "FLOAT"},
    {"name": "simplify_tolerance_m", "value": "10", "type": "FLOAT"},
    {"name": "skip_values", "value": "0", "type": "STRING"},
]

needs_serving_env = pytest.mark.skipif(
    not SERVING_PYTHON.exists(),
    reason=".venv-serving is missing: build the serving environment "
    "(python3.11 -m venv .venv-serving; pip install -r requirements/serving.txt; "
    "pip install --no-deps -e .)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def label() -> tuple[np.ndarray, object, object]:
    raster = read_mask(fetch(LABEL_KEY), nodata=-1)
    return raster.mask, raster.transform, raster.crs


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The transformer as a real microservice on loopback; yields (base URL, pid)."""
    http_port, metrics_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("seldon") / "microservice.log"
    command = [
        str(SERVING_PYTHON), "-m", "geomlops.transformers.microservice", COMPONENT,
        "--service-type", "TRANSFORMER", "--http-port", str(http_port),
        "--metrics-port", str(metrics_port), "--parameters", json.dumps(PARAMETERS),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn masters and workers
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"microservice exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health/ping", timeout=2).text == "pong":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"microservice not ready after 90 s:\n{log.read_text()}")
            time.sleep(0.3)
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _request(mask: np.ndarray, transform: object, crs: object, **kwargs: object) -> dict:
    return {
        "jsonData": payload.encode(
            mask, transform, crs, classes=WATER_CLASSES, nodata=-1, **kwargs
        ),
        "meta": {"tags": {"model_name": "flood-water-s2", "model_version": "3"}},
    }


# --- the payload contract, in-process ------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_payload_round_trips_mask_and_probabilities(label, compress: bool) -> None:
    mask, transform, crs = label
    probabilities = np.random.default_rng(0).random((2, *mask.shape), dtype=np.float32)
    encoded = payload.encode(
        mask,
        transform,
        crs,
        classes=WATER_CLASSES,
        nodata=-1,
        probabilities=probabilities,
        compress=compress,
    )
    decoded = payload.decode(json.loads(json.dumps(encoded)))
    np.testing.assert_array_equal(decoded.mask, mask)
    # Confidence travels in steps of 1/255: within half a step of what was sent.
    np.testing.assert_allclose(decoded.probabilities, probabilities, atol=0.5 / 255 + 1e-7)
    assert decoded.transform == transform
    assert decoded.crs == "EPSG:4326" and decoded.nodata == -1
    assert decoded.classes == WATER_CLASSES


def _mask_part(**changes: object) -> dict:
    part = payload.encode(np.zeros((4, 4), dtype=np.uint8), (10, 0, 0, 0, -10, 0), 32630)
    part["mask"].update(changes)
    return part


@pytest.mark.parametrize(
    ("json_data", "message"),
    [
        ([1, 2, 3], "expected an object with mask"),
        ({"mask": {}}, "transform: Field required"),
        (_mask_part(dtype="float32"), r"mask.dtype: 'float32' is not one of"),
        (_mask_part(data="***"), "mask.data: not base64"),
        (_mask_part(data=base64.b64encode(b"plain").decode()), "mask.data: not zlib data"),
        (_mask_part(shape=[5, 4]), r"bytes do not hold a uint8 array of shape \[5, 4\]"),
        (_mask_part(shape=[0, 4]), "has an empty dimension"),
        (_mask_part(shape=[9000, 9000]), "more than the"),
        ({**_mask_part(), "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_payloads_are_refused_naming_the_field(json_data: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        payload.decode(json_data)
    assert re.search(message, str(error.value))


def test_decompression_is_bounded_by_the_declared_shape() -> None:
    bomb = base64.b64encode(zlib.compress(bytes(50_000_000))).decode()
    with pytest.raises(ValidationFailed, match="bytes do not hold"):
        payload.decode(_mask_part(data=bomb, shape=[100, 100]))


# --- the microservice ----------------------------------------------------------------


@needs_serving_env
def test_transform_output_returns_the_label_water_as_geojson(service, label) -> None:
    base, _ = service
    mask, transform, crs = label
    response = httpx.post(
        f"{base}/transform-output", json=_request(mask, transform, crs), timeout=60
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    collection = answer["jsonData"]
    assert collection["type"] == "FeatureCollection"
    (feature,) = collection["features"]
    assert feature["properties"]["class_name"] == "water"
    geometry = shape(feature["geometry"])
    assert geometry.is_valid
    covered = rasterio.features.rasterize(
        [(geometry, 1)], out_shape=mask.shape, transform=transform, dtype=np.uint8
    ).astype(bool)
    water = mask == 1
    # Islands under 500 m² go and 10 m simplification cuts staircase corners, which flips
    # pixel centres along every edge: IoU 0.94 (1.0 with neither, tested in-process).
    assert (covered & water).sum() / (covered | water).sum() > 0.92
    assert not (covered & (mask == -1)).any()
    # The serving environment (NumPy 1.26) gives what the library gives here (NumPy 2).
    assert collection == mask_to_geojson(
        mask, transform, crs, classes=WATER_CLASSES, nodata=-1, options=OPTIONS
    )
    assert answer["meta"]["tags"] == {"model_name": "flood-water-s2", "model_version": "3"}


@needs_serving_env
def test_mean_confidence_travels_through_the_service(service, label) -> None:
    base, _ = service
    mask, transform, crs = label
    probabilities = np.stack([np.full(mask.shape, 0.25), np.full(mask.shape, 0.75)])
    request = _request(mask, transform, crs, probabilities=probabilities.astype(np.float32))
    response = httpx.post(f"{base}/transform-output", json=request, timeout=60)
    assert response.status_code == 200, response.text
    (feature,) = response.json()["jsonData"]["features"]
    # 0.75 travels as 191/255 (uint8 steps): within half a step.
    assert feature["properties"]["mean_confidence"] == pytest.approx(0.75, abs=0.5 / 255 + 1e-3)


@needs_serving_env
def test_a_probability_output_gets_threshold_polygons_and_statistics(service, label) -> None:
    """The output's kind, sent in the payload, chooses the post-processor in the service."""
    base, _ = service
    mask, transform, crs = label
    values = np.where(mask == 1, 0.9, 0.2).astype(np.float32)
    values[mask == -1] = np.nan
    spec = OutputSpec(
        OutputKind.PROBABILITY, classes=({"value": 1, "name": "water"},), threshold=0.5
    )
    request = {
        "jsonData": payload.encode(values, transform, crs, classes=list(spec.classes), output=spec),
        "meta": {"tags": {"model_name": "water-probability", "model_version": "1"}},
    }
    response = httpx.post(f"{base}/transform-output", json=request, timeout=60)
    assert response.status_code == 200, response.text
    collection = response.json()["jsonData"]
    expected = postprocess(spec, RasterPrediction(values, transform, crs), options=OPTIONS)
    assert collection == json.loads(json.dumps(expected.feature_collection()))
    (feature,) = collection["features"]
    assert feature["properties"]["class_name"] == "water"
    assert feature["properties"]["mean_confidence"] == pytest.approx(0.9, abs=1e-4)
    stats = collection["geomlops:stats"]
    assert stats["above_threshold_pixels"] == int((mask == 1).sum())
    assert stats["valid_pixels"] == int((mask != -1).sum())


@needs_serving_env
def test_megabyte_requests_back_to_back_on_one_connection(service, label) -> None:
    """Bodies are read whole (wrapper_messages.WholeBody), not 1 KB at a time: big ones in a
    row on one keep-alive connection each get their own answer, nothing left over or lost."""
    base, _ = service
    mask, transform, crs = label
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=base, timeout=60) as client:
        for confidence in (0.6, 0.9, 0.7):
            noise = rng.random((2, *mask.shape), dtype=np.float32) * 0.01
            probabilities = np.stack(
                [np.full(mask.shape, 1 - confidence), np.full(mask.shape, confidence)]
            ).astype(np.float32)
            body = json.dumps(
                _request(mask, transform, crs, probabilities=probabilities + noise, compress=False)
            ).encode()
            assert len(body) > 700_000
            response = client.post(
                "/transform-output", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200, response.text
            (feature,) = response.json()["jsonData"]["features"]
            assert feature["properties"]["mean_confidence"] == pytest.approx(confidence, abs=0.01)
        assert client.get("/health/ping").text == "pong"


@needs_serving_env
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"jsonData": {"mask": "nope"}}, "jsonData is not a mask payload"),
        ({"strData": "hello"}, "expected an object with mask"),
        ({"jsonData": {**_mask_part(), "crs": "EPSG:0"}}, "crs: 'EPSG:0' is not"),
    ],
)
def test_bad_requests_get_400_with_a_message_and_the_service_stays_up(
    service, body: dict, message: str
) -> None:
    base, _ = service
    response = httpx.post(f"{base}/transform-output", json=body, timeout=30)
    assert response.status_code == 400
    status = response.json()["status"]
    assert message in status["info"] and status["reason"] == "BAD_MASK_PAYLOAD"
    assert httpx.get(f"{base}/health/ping", timeout=5).text == "pong"


@needs_serving_env
def test_metadata_describes_the_component_and_its_parameters(service) -> None:
    base, _ = service
    metadata = httpx.get(f"{base}/metadata", timeout=10).json()
    assert metadata["name"] == "raster-to-vector"
    assert metadata["inputs"][0]["messagetype"] == "jsonData"
    assert metadata["custom"]["min_area_m2"] == "500.0"
    assert metadata["custom"]["skip_values"] == "[0]"


@needs_serving_env
def test_microservice_listens_on_loopback_only(service) -> None:
    _, pid = service
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    listening = {
        (c.laddr.ip, c.laddr.port)
        for p in processes
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert len(listening) == 2  # REST and metrics; no gRPC server
    assert {ip for ip, _ in listening} == {"127.0.0.1"}


@needs_serving_env
@pytest.mark.parametrize("argument", [["--debug"], ["--grpc-workers", "2"]])
def test_launcher_refuses_modes_that_bind_all_interfaces(argument: list[str]) -> None:
    result = subprocess.run(
        [str(SERVING_PYTHON), "-m", "geomlops.transformers.microservice", COMPONENT, *argument],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "127.0.0.1 only" in result.stderr
