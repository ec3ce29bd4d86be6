"""Running a generic processor: checksum first, its own process, limits, and every failure.

Real subprocesses, real limits: a script that sleeps is killed at its time limit (with the
children it started), one that raises fails with its stderr, one that prints on stdout or
returns no dict fails as non-JSON, one over its memory limit fails, and a script changed
after registration is refused without running. The shipped examples run on polygons made
here and on the shared country outlines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from geomlops.processors import sha256_file
from geomlops.settings import get_settings
from geomlops.workflows.inference.processor_run import Limits, ProcessorFailed, run_processor
from geomlops.workflows.inference.progress import run_status

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(timeout_s=60, memory_mb=2048)


def _run(tmp_path: Path, body: str, limits: Limits = LIMITS, params: dict | None = None) -> dict:
    script = tmp_path / "proc.py"
    script.write_text(f"PARAMETERS = {{}}\n\n\ndef process(inputs, params):\n{body}\n")
    return run_processor(
        script, sha256_file(script), {"a": 1}, params or {}, tmp_path / "w", limits
    )


def test_the_result_is_the_returned_dict(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "    import sys\n    print('a log line', file=sys.stderr)\n"
        "    return {'inputs': inputs, 'params': params}",
        params={"k": 2.5},
    )
    assert result == {"inputs": {"a": 1}, "params": {"k": 2.5}}


def test_the_process_gets_no_platform_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOMLOPS_S3_SECRET_KEY", "do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    result = _run(tmp_path, "    import os\n    return {'env': dict(os.environ)}")
    assert "do-not-leak" not in json.dumps(result)
    assert not [k for k in result["env"] if k.startswith(("GEOMLOPS", "AWS"))]


def test_a_script_past_its_time_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    body = (
        "    import subprocess, time\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    print('started', flush=True, file=__import__('sys').stderr)\n"
        "    time.sleep(300)\n"
        "    return {}"
    )
    started = time.monotonic()
    with pytest.raises(ProcessorFailed, match="past its time limit of 2 s") as caught:
        _run(tmp_path, body, Limits(timeout_s=2, memory_mb=2048))
    assert time.monotonic() - started < 20
    assert "started" in caught.value.stderr
    child = int(pid_file.read_text())
    for _ in range(50):  # the kill is delivered at once; reaping by init may lag a little
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child {child} of the killed processor is still running")


def test_a_failing_script_fails_with_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(ProcessorFailed, match="exit code 1") as caught:
        _run(tmp_path, "    raise ValueError('the countries file is missing')")
    assert "ValueError: the countries file is missing" in caught.value.stderr
    assert "the countries file is missing" in caught.value.message


def test_printing_on_stdout_makes_the_output_non_json(tmp_path: Path) -> None:
    with pytest.raises(ProcessorFailed, match="printed non-JSON on stdout"):
        _run(tmp_path, "    print('hello')\n    return {'x': 1}")


def test_a_result_that_is_not_a_json_object_fails(tmp_path: Path) -> None:
    with pytest.raises(ProcessorFailed, match="exit code 3") as caught:
        _run(tmp_path, "    return [1, 2]")
    assert "returned list, not a dict" in caught.value.stderr
    with pytest.raises(ProcessorFailed, match="exit code 1") as caught:
        _run(tmp_path, "    return {'x': float('nan')}")
    assert "not JSON compliant" in caught.value.stderr


def test_a_script_over_its_memory_limit_fails(tmp_path: Path) -> None:
    with pytest.raises(ProcessorFailed) as caught:
        _run(tmp_path, "    b = bytearray(3 * 1024**3)\n    return {}", Limits(60, memory_mb=1024))
    assert "MemoryError" in caught.value.stderr


def test_a_script_changed_after_registration_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "proc.py"
    script.write_text("PARAMETERS = {}\n\n\ndef process(inputs, params):\n    return {}\n")
    catalogued = sha256_file(script)
    script.write_text(
        "PARAMETERS = {}\n\n\ndef process(inputs, params):\n"
        f"    open({str(marker)!r}, 'w').write('x')\n    return {{}}\n"
    )
    with pytest.raises(ProcessorFailed, match="is not the catalogued"):
        run_processor(script, catalogued, {}, {}, tmp_path / "w", LIMITS)
    assert not marker.exists()


def _polygons(tmp_path: Path) -> Path:
    """Water near Valencia, Spain: one 1 km² square and ten 20 m squares, as publish writes."""
    from shapely.geometry import MultiPolygon, box, mapping

    lon, lat = -0.4, 39.3
    big = box(lon, lat, lon + 0.0116, lat + 0.009)  # ~1 km x 1 km
    small = [box(lon + 0.02 + i * 0.001, lat, lon + 0.02 + i * 0.001 + 0.00023, lat + 0.00018)
             for i in range(10)]  # fmt: skip
    feature = {
        "type": "Feature",
        "geometry": mapping(MultiPolygon([big, *small])),
        "properties": {"class_name": "water", "class_value": 1},
    }
    path = tmp_path / "v.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def _example(name: str, tmp_path: Path, params: dict) -> tuple[dict, Path]:
    script = REPO / "processors" / name
    out = tmp_path / "out"
    out.mkdir()
    inputs = {"vectors": str(_polygons(tmp_path)), "output_dir": str(out)}
    return run_processor(script, sha256_file(script), inputs, params, tmp_path / "w", LIMITS), out


def test_min_mapping_unit_drops_small_polygons_measured_in_utm(tmp_path: Path) -> None:
    result, out = _example(
        "min_mapping_unit.py", tmp_path, {"min_area_m2": 5000.0, "class_name": ""}
    )
    assert result["crs"] == "EPSG:32630"  # Valencia lies in UTM zone 30N
    assert result["polygons"] == {"input": 11, "kept": 1, "dropped": 10}
    assert 10 * 300 < result["dropped_area_m2"] < 10 * 600  # ~20 x 20 m each
    kept = json.loads((out / "filtered.geojson").read_text())["features"]
    assert len(kept) == 1 and 0.9e6 < kept[0]["properties"]["utm_area_m2"] < 1.1e6


def test_flooded_area_per_country_finds_spain(tmp_path: Path) -> None:
    vector_dir = get_settings().gateway.vector_dir
    if vector_dir is None or not (vector_dir / "countries.geojson").exists():
        pytest.skip("the shared data's countries.geojson is not here")
    params = {"countries": str(vector_dir / "countries.geojson"), "class_name": "water"}
    result, _ = _example("flood_area_by_country.py", tmp_path, params)
    (spain,) = result["countries"]
    assert spain["country"] == "Spain" and spain["iso_a3"] == "ESP"
    assert spain["area_km2"] == pytest.approx(result["total_area_km2"])
    assert 1.0 < result["total_area_km2"] < 1.1  # the square and ten tiny ones


@pytest.mark.parametrize(
    ("processing", "phase", "status"),
    [
        (None, "Succeeded", "COMPLETED"),
        ("complete", "Succeeded", "COMPLETED"),
        ("pending", "Running", "PUBLISHING"),
        ("pending", "Failed", "FAILED"),
        ("incomplete", "Failed", "FAILED"),
        ("incomplete", None, "FAILED"),
    ],
)
def test_a_published_run_is_complete_only_once_its_processors_ran(
    processing: str | None, phase: str | None, status: str
) -> None:
    assert (
        run_status(
            planned=True, published=True, counts={}, workflow_phase=phase, processing=processing
        )
        == status
    )
