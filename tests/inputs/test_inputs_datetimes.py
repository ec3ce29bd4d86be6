"""Hostile request intervals, through ``geomlops infer --datetime`` and the gateway's check.

Refused at once, before anything is submitted: a reversed interval used to be submitted and
fail 48 s later in the plan step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corpus import expect_refusal, run_cli

from geomlops.settings import Settings
from geomlops.workflows.inference.request import normalise_interval, prepare

CASES: dict[str, tuple[Any, list[str]]] = {
    "reversed-days": ("2019-09-30/2019-09-01", ["after the end"]),
    "reversed-hours": ("2019-09-18T12:00:00Z/2019-09-18T09:00:00Z", ["after the end"]),
    "reversed-years": ("2021-01-01/1999-01-01", ["after the end"]),
    "february-30": ("2019-02-30/2019-03-01", ["2019-02-30", "not a real date"]),
    "month-13": ("2019-13-01/2019-12-31", ["2019-13-01", "not a real date"]),
    "day-00": ("2019-09-00/..", ["2019-09-00"]),
    "hour-25": ("2019-09-18T25:00:00Z/..", ["25:00", "not a real date"]),
    "minute-61": ("../2019-09-18T10:61:00Z", ["10:61", "not a real date"]),
    "offset-99h": ("2019-09-18T10:00:00+99:00/..", ["+99:00"]),
    "both-open": ("../..", ["START/END"]),
    "empty": ("", ["START/END"]),
    "single-date": ("2019-09-01", ["START/END"]),
    "words": ("yesterday/today", ["START/END"]),
    "three-parts": ("2019-09-01/2019-09-02/2019-09-03", ["START/END"]),
    "slashed-dates": ("2019/09/01", ["START/END"]),
    "unicode-digits": ("\uff12\uff10\uff11\uff19-09-01/..", ["START/END"]),
    "year-0": ("0000-01-01/..", ["0000-01-01"]),
    "time-garbage": ("2019-09-18T::::/..", ["2019-09-18T::::"]),
}
NAMES = sorted(CASES)
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[-0.78, 38.08], [-0.73, 38.08], [-0.73, 38.12], [-0.78, 38.08]]],
}


@pytest.mark.parametrize("case", NAMES)
def test_interval_check_refuses(case: str, request: pytest.FixtureRequest) -> None:
    text, fragments = CASES[case]
    expect_refusal(request, lambda: normalise_interval(text), ["datetime", *fragments])


@pytest.mark.parametrize("case", NAMES)
def test_gateway_refuses_datetime(case: str, request: pytest.FixtureRequest) -> None:
    text, fragments = CASES[case]

    def submit() -> Any:
        return prepare(
            model="flood-water-s2",
            version=None,
            aoi=SQUARE,
            datetime=text,
            allow_outside_region=False,
            settings=Settings(),
        )

    expect_refusal(request, submit, ["datetime", *fragments])


@pytest.mark.parametrize("case", NAMES)
def test_cli_infer_refuses_datetime(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    text, fragments = CASES[case]
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(SQUARE))
    args = ["infer", "flood-water-s2", "--aoi", str(aoi), "--datetime", text]
    expect_refusal(request, lambda: run_cli(args), ["--datetime", *fragments])


def test_valid_intervals_are_widened_to_whole_days() -> None:
    assert (
        normalise_interval("2019-09-01/2019-09-01") == "2019-09-01T00:00:00Z/2019-09-01T23:59:59Z"
    )
    assert normalise_interval("../2019-09-18T10:00:00Z") == "../2019-09-18T10:00:00Z"
    assert normalise_interval("2019-09-18T10:00:00+02:00/..") == "2019-09-18T10:00:00+02:00/.."
