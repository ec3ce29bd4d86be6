"""The ``process`` step: a run's generic processors, after its outputs are published.

A request names processors (``--processor NAME[@VERSION] -p k=v``); the plan step pins each
(:func:`pin_processors`: version, script, sha256 and every parameter resolved) into the
run's plan, and publish marks the run's items ``geomlops:processing: pending``. This step
then downloads the run's COGs and GeoJSON and each script, runs each processor in its own
limited process (:mod:`.processor_run`), stores its JSON result and output files in the
run's folder (``processors/<name>/``) and records it on the items: the result and files as
assets of the run's item, ``geomlops:processors`` (name, version, item, sha256, params,
result) on every item, a ``processor`` link to its version's item, and
``geomlops:processing: complete``. A processor that fails stops the step: the items say
``incomplete`` with its error, ``processing.json`` records it, and the step fails with its
stderr's tail, so the run is FAILED, not complete.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import PREDICTIONS, PROCESSORS
from geomlops.catalog.imagery import file_checksum
from geomlops.catalog.processors import find, parse_reference
from geomlops.connections import Connections, get_connections
from geomlops.errors import GeomlopsError, ValidationFailed
from geomlops.model import properties as prop
from geomlops.processors import check_name, resolve_parameters, result_folder
from geomlops.settings import Settings, get_settings
from geomlops.workflows.inference.config import InferenceRunConfig, ProcessorPin
from geomlops.workflows.inference.processor_run import Limits, ProcessorFailed, run_processor
from geomlops.workflows.inference.progress import PUBLISHED
from geomlops.workflows.inference.storage import get_file, put_file

log = logging.getLogger(__name__)

PROCESSING = "processing.json"
"""How the run's processors went, in its folder: ``{status, processors: [...]}``."""
PENDING, COMPLETE, INCOMPLETE = "pending", "complete", "incomplete"


def pin_processors(
    references: list[str], params: dict[str, str], settings: Settings
) -> list[ProcessorPin]:
    """Each named processor's version pinned, with every parameter resolved.

    Each ``-p k=v`` goes to every named processor that declares ``k``; one that none of
    them declares is refused (a typo never runs with a default). Each value must be of its
    declared type, and every parameter without a default of the script's or the
    registration's must be given — all checked before a run starts.
    """
    pins = []
    used: set[str] = set()
    with CatalogClient(get_connections(settings).stac_url) as catalog:  # reads are public
        for reference in references:
            name, version = parse_reference(reference)
            check_name(name)
            item = find(catalog, name, version)
            props = item["properties"]
            declared = props[prop.PROCESSOR_PARAMETERS]
            given = {k: v for k, v in params.items() if k in declared}
            used |= set(given)
            values = resolve_parameters(
                declared, {**props[prop.PROCESSOR_DEFAULTS], **given}, f"processor {name} -p"
            )
            pins.append(
                ProcessorPin(
                    name=name,
                    version=int(props["version"]),
                    item_id=item["id"],
                    script_uri=item["assets"]["script"]["href"],
                    sha256=props[prop.PROCESSOR_SHA256],
                    params=values,
                )
            )
    unknown = sorted(set(params) - used)
    if unknown:
        raise ValidationFailed(
            f"-p: no processor named declares {', '.join(unknown)}",
            hint="`geomlops processor show NAME` lists a processor's parameters",
        )
    return pins


def _inputs(conn: Connections, config: InferenceRunConfig, folder: Path) -> dict[str, Any]:
    """The run's published outputs as local files, and what a processor needs to read them."""
    published = objects.read_json(conn, config.uri(PUBLISHED))
    rasters = []
    for uri in published["masks"]:
        name = uri.rsplit("/", 1)[-1]
        rasters.append({"path": str(get_file(conn, uri, folder / name)), "href": uri})
    vectors = get_file(conn, published["vectors"], folder / "predictions.geojson")
    return {
        "rasters": rasters,
        "vectors": str(vectors),
        "classes": [{"value": c.value, "name": c.name} for c in config.model.classes],
        "stats": published["stats"],
        "aoi": config.request.aoi,
        "run": config.workflow,
        "model": {"name": config.model.name, "version": config.model.version},
    }


def _store(
    conn: Connections,
    config: InferenceRunConfig,
    pin: ProcessorPin,
    result: dict[str, Any],
    output_dir: Path,
    settings: Settings,
) -> dict[str, dict[str, Any]]:
    """Put the result and output files in the run's folder; their assets, by key."""
    folder = result_folder(config.run_uri, pin.name)
    files = sorted(p for p in output_dir.rglob("*") if p.is_file())
    if len(files) > settings.processor.max_output_files:
        raise ProcessorFailed(
            f"processor {pin.name} wrote {len(files)} files; at most "
            f"{settings.processor.max_output_files} are kept (GEOMLOPS_PROCESSOR_MAX_OUTPUT_FILES)"
        )
    assets: dict[str, dict[str, Any]] = {}
    for path in files:
        relative = path.relative_to(output_dir).as_posix()
        uri = f"{folder}/files/{relative}"
        put_file(conn, path, uri)
        assets[f"{pin.name}:{relative}"] = {
            "href": uri,
            "type": "application/geo+json" if path.suffix == ".geojson" else None,
            "roles": ["data"],
            "title": f"{relative}, written by processor {pin.name} v{pin.version}",
            "file:size": path.stat().st_size,
            "file:checksum": file_checksum(path),
        }
    result_file = output_dir.parent / "result.json"
    objects.write_json(conn, f"{folder}/result.json", result)
    get_file(conn, f"{folder}/result.json", result_file)  # the stored bytes, for the checksum
    assets[pin.name] = {
        "href": f"{folder}/result.json",
        "type": "application/json",
        "roles": ["metadata"],
        "title": f"Result of processor {pin.name} v{pin.version}",
        "file:size": result_file.stat().st_size,
        "file:checksum": file_checksum(result_file),
    }
    return {key: {k: v for k, v in a.items() if v is not None} for key, a in assets.items()}


def _record(
    config: InferenceRunConfig,
    status: str,
    entries: list[dict[str, Any]],
    assets: dict[str, dict[str, Any]],
    settings: Settings,
) -> None:
    """Write the processors' outcome onto every item of the run (assets on the run's)."""
    from geomlops.workflows.inference.publish import item_ids

    stac_url = get_connections(settings).stac_url
    links = [
        {
            "rel": "processor",
            "href": f"{stac_url}/collections/{PROCESSORS}/items/{quote(e['item'], safe='')}",
            "type": "application/geo+json",
            "title": f"generic processor {e['name']} v{e['version']}",
        }
        for e in entries
    ]
    with CatalogClient.from_settings(settings) as catalog:
        for key, item_id in item_ids(config).items():
            try:
                item = catalog.get_item_dict(PREDICTIONS, item_id)
            except GeomlopsError:
                continue  # a scene without tiles has no item
            item["properties"][prop.PROCESSING] = status
            item["properties"][prop.PROCESSORS] = entries
            item["links"] = [
                link for link in item.get("links", []) if link.get("rel") != "processor"
            ] + links
            if key == "":
                item["assets"].update(assets)
            catalog.upsert_item(item, PREDICTIONS)


def process_step(
    config_uri: str, *, outputs: Path | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Run the run's processors (none: nothing to do); see the module."""
    settings = settings or get_settings()
    conn = get_connections(settings)
    config = InferenceRunConfig.load(conn, config_uri)
    if not config.processors:
        return {"status": None, "processors": []}
    limits = Limits(
        timeout_s=settings.processor.timeout_s,
        memory_mb=settings.processor.memory_mb,
        file_mb=settings.processor.file_mb,
        stderr_chars=settings.processor.stderr_chars,
    )
    entries: list[dict[str, Any]] = []
    assets: dict[str, dict[str, Any]] = {}
    failure: ProcessorFailed | None = None
    with tempfile.TemporaryDirectory(prefix="geomlops-process-") as tmp:
        folder = Path(tmp)
        (folder / "inputs").mkdir()
        inputs = _inputs(conn, config, folder / "inputs")
        for pin in config.processors:
            entry: dict[str, Any] = {
                "name": pin.name,
                "version": pin.version,
                "item": pin.item_id,
                "sha256": pin.sha256,
                "params": pin.params,
            }
            entries.append(entry)
            work = folder / pin.name
            output_dir = work / "outputs"
            output_dir.mkdir(parents=True)
            script = get_file(conn, pin.script_uri, work / pin.script_uri.rsplit("/", 1)[-1])
            try:
                result = run_processor(
                    script,
                    pin.sha256,
                    {**inputs, "output_dir": str(output_dir)},
                    pin.params,
                    work / "run",
                    limits,
                )
                assets.update(_store(conn, config, pin, result, output_dir, settings))
            except ProcessorFailed as error:
                entry.update(status="failed", error=error.message)
                failure = error
                break
            entry.update(
                status="complete", result=f"{result_folder(config.run_uri, pin.name)}/result.json"
            )
            log.info("processor %s v%d: done", pin.name, pin.version)
    status = INCOMPLETE if failure else COMPLETE
    outcome = {"status": status, "processors": entries}
    objects.write_json(conn, config.uri(PROCESSING), outcome)
    _record(config, status, entries, assets, settings)
    if failure is not None:
        if outputs is not None:
            from geomlops.workflows.templates.parts import TERMINATION_LOG

            outputs.mkdir(parents=True, exist_ok=True)
            (outputs / TERMINATION_LOG).write_text(failure.message[-4000:], encoding="utf-8")
        raise failure
    return outcome


def processing_outcome(conn: Connections, config: InferenceRunConfig) -> dict[str, Any] | None:
    """What the run's ``process`` step recorded, or None (no processors, or not run yet)."""
    if not config.processors:
        return None
    try:
        outcome: dict[str, Any] = objects.read_json(conn, config.uri(PROCESSING))
    except GeomlopsError:
        return {"status": PENDING, "processors": []}
    return outcome
