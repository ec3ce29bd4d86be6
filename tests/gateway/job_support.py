"""Helpers of the gateway's tests: an execute request, a credential, polling a job."""

from __future__ import annotations

import time
from typing import Any

import httpx
from ogc_schemas import check

EXECUTE = "/processes/batch-inference/execution"
ASYNC = {"Prefer": "respond-async"}
JOB_TIMEOUT = 600


def execute_inputs(aoi: dict, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": {
            "model": "flood-water-s2",
            "aoi": aoi,
            "datetime": "2019-09-01/2019-09-30",
            **extra,
        }
    }


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def poll_job(client: httpx.Client, location: str, key: str) -> dict[str, Any]:
    """Poll a job until it ends; every status on the way is valid statusInfo."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        response = client.get(location, headers=as_key(key))
        assert response.status_code == 200, response.text
        info = response.json()
        check("Status", info)
        assert set(info["tasks"]) == {"total", "succeeded", "failed", "waiting"}
        if info["status"] not in ("accepted", "running"):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.5)
