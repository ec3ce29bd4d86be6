"""The end-to-end demo behind `make demo`.

Each capability that works end to end adds a step here, so the demo always shows the
whole platform as it stands. Steps run in order against the local stack, which is left
running at the end so a person can explore what the demo made.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from geomlops.connections import get_connections
from geomlops.settings import Settings
from geomlops.stack.manager import LocalStack
from geomlops.stack.state import existing_secret

console = Console(stderr=True)


@dataclass(frozen=True)
class DemoStep:
    """One stage of the demo: a title and the function that performs it."""

    title: str
    run: Callable[[Settings], None]


def _start_stack(settings: Settings) -> None:
    statuses = LocalStack(settings).up(progress=lambda msg: console.print(f"  [dim]{msg}[/]"))
    unhealthy = [s.name for s in statuses if not s.healthy]
    if unhealthy:
        raise RuntimeError(f"unhealthy after up: {unhealthy}")


DEMO_PACKAGES = ("flood-water-s2", "flood-water-s1", "cloud-s2")


def _register_packages(settings: Settings) -> None:
    """Validate and register the example packages (a second run reports them unchanged)."""
    from geomlops.registration.register import register_package
    from geomlops.registration.source import origin_url, repository_root
    from geomlops.registration.validate import validate_or_raise
    from geomlops.settings.base import repo_dir

    folder = repo_dir("model_packages")
    root = repository_root(folder) if folder is not None else None
    if folder is None or root is None:
        raise RuntimeError(
            "the demo registers the example packages of a git checkout of geomlops "
            "(model_packages/); run it from one"
        )
    # Their source is this repository: its remote when it has one; a checkout without a
    # remote (a copy made for the demo) is itself the repository training clones.
    git_url = None if origin_url(root) else str(root)
    for name in DEMO_PACKAGES:
        validate_or_raise(folder / name, settings)
        console.print(f"  [green]valid[/] {name}")
        result = register_package(folder / name, settings=settings, git_url=git_url)
        for line in result.summary():
            console.print(f"  {line}")
        for note in result.notes:
            console.print(f"  [dim]note: {note}[/]")


SEN1FLOODS11 = (
    "imagery/sen1floods11/Spain_7370579_S2Hand.tif",
    "imagery/sen1floods11/Spain_7370579_S1Hand.tif",
    "imagery/sen1floods11/Spain_7370579_LabelHand.tif",
)
DEMO_DATASET = "sen1floods11"
DEMO_MODEL = "flood-water-s2"
DEMO_IDENTITIES = {"demo-trainer": ("writer", "approver"), "demo-approver": ("approver",)}


def _geomlops(*args: str, key: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
    """Run a `geomlops` command as a person would, showing it; return its stdout."""
    env = dict(os.environ)
    if key is not None:
        env["GEOMLOPS_API_KEY"] = key
    console.print(f"  [bold cyan]$ geomlops {' '.join(shlex.quote(a) for a in args)}[/]")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "geomlops"), *args],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode not in ok:
        raise RuntimeError(f"`geomlops {' '.join(args)}` exited {done.returncode}")
    return done.stdout


def _demo_keys(settings: Settings) -> dict[str, str]:
    """API keys of the demo's two people, created once and kept in the state directory."""
    from geomlops.catalog.db import pgstac_connection
    from geomlops.catalog.keys import create_key

    paths = LocalStack(settings).paths
    stored = existing_secret(paths, "demo_keys") or {}
    missing = {name: roles for name, roles in DEMO_IDENTITIES.items() if name not in stored}
    if missing:
        with pgstac_connection(settings) as conn:
            for name, roles in missing.items():
                stored[name], _ = create_key(conn, name, roles)
        path = paths.secrets_dir / "demo_keys.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored))
    return stored


def _version_dataset(settings: Settings) -> None:
    """Put the Sen1Floods11 chip under DVC as a dataset version (unchanged data: same one)."""
    from geomlops.datasets.registry import DatasetRegistry, staged
    from geomlops.sample_data import fetch, sample_data_root

    files = [fetch(key, settings=settings) for key in SEN1FLOODS11]
    root = sample_data_root(settings)
    with staged([files[0].parent], root) as staged_root:
        version, new = DatasetRegistry(settings).add(
            staged_root, DEMO_DATASET, description="Sen1Floods11 Spain chip with hand label"
        )
    state = "new version" if new else "unchanged, same version"
    console.print(f"  dataset {version.tag}: md5 {version.md5} ({state})")


def _train(settings: Settings) -> None:
    """Train the S2 model through `geomlops-train`, as the trainer; it ends awaiting approval."""
    keys = _demo_keys(settings)
    run = _geomlops(
        "workflows", "submit", "geomlops-train",
        "-p", f"package={DEMO_MODEL}", "-p", f"dataset={DEMO_DATASET}",
        "-p", "epochs=12",
        key=keys["demo-trainer"], ok=(2,),
    ).strip()  # fmt: skip
    (LocalStack(settings).paths.outputs_dir / "last-training-run.txt").write_text(run + "\n")


def _promote(settings: Settings) -> None:
    """The trainer may not approve; a second person, an approver, promotes the candidate."""
    keys = _demo_keys(settings)
    paths = LocalStack(settings).paths
    run = (paths.outputs_dir / "last-training-run.txt").read_text().strip()
    reason = "held-out water IoU meets the gate on the Sen1Floods11 Spain block"
    _geomlops("workflows", "resume", run, "--reason", reason, key=keys["demo-trainer"], ok=(1,))
    console.print("  [yellow]refused, as it should be: nobody approves a model they trained[/]")
    _geomlops("workflows", "resume", run, "--reason", reason, key=keys["demo-approver"])
    console.print(_geomlops("audit", DEMO_MODEL), end="")


CLOUD_MODEL = "cloud-s2"
CLEAR_SKY_PIPELINE = "model_packages/flood-water-s2/pipelines/clear-sky.yaml"


def _cloud_model(settings: Settings) -> None:
    """A second model of another kind and framework: s2cloudless's LightGBM cloud probability.

    It trains (packages the pretrained booster and evaluates it) in its own environment, with
    LightGBM and s2cloudless, which the platform's does not hold, and an approver promotes it.
    """
    keys = _demo_keys(settings)
    run = _geomlops(
        "workflows", "submit", "geomlops-train",
        "-p", f"package={CLOUD_MODEL}", "-p", f"dataset={DEMO_DATASET}",
        key=keys["demo-trainer"], ok=(2,),
    ).strip()  # fmt: skip
    reason = "clear-sky agreement on the cloud-free Sen1Floods11 Spain chip meets the gate"
    _geomlops("workflows", "resume", run, "--reason", reason, key=keys["demo-approver"])
    console.print(_geomlops("audit", CLOUD_MODEL), end="")


def _composed_inference(settings: Settings) -> None:
    """Flood water only where cloud-s2 says the sky is clear: two models, one prediction."""
    from geomlops.settings.base import repo_dir

    root = repo_dir("model_packages")
    if root is None:
        raise RuntimeError("the demo's pipeline spec is in a geomlops checkout")
    spec = root.parent / CLEAR_SKY_PIPELINE
    aoi = LocalStack(settings).paths.outputs_dir / "sen1floods11-aoi.geojson"
    summary = json.loads(
        _geomlops(
            "infer", "--pipeline", str(spec), "--aoi", str(aoi),
            "--datetime", "2019-09-01/2019-09-30", "--json",
        )
    )  # fmt: skip
    run = summary["run"]
    stats = _scene_stats(run)
    console.print(
        f"  water {stats.get('water_area_km2')} km², masked as cloud "
        f"{stats.get('masked_area_km2', 0)} km² (the chip is nearly cloud-free)"
    )
    console.print(_geomlops("lineage", run), end="")


def _lineage(settings: Settings) -> None:
    """Print the full chain behind the production version, every link resolved."""
    from geomlops.model.resolve import resolve_model

    model = resolve_model(DEMO_MODEL, settings=settings)
    console.print(_geomlops("lineage", model.item_id), end="")
    lineage = _geomlops("lineage", model.item_id, "--json")
    (LocalStack(settings).paths.outputs_dir / f"lineage-{model.item_id}.json").write_text(lineage)


DEMO_SCENE_TIME = "2019-09-18T10:50:00Z"


def demo_aoi(chip: Path) -> dict:
    """The AOI of the demo: the Sen1Floods11 chip's footprint, a little inside its edges."""
    import rasterio

    with rasterio.open(chip) as src:
        west, south, east, north = src.bounds
    margin = 0.02 * (east - west)
    ring = [
        [west + margin, south + margin], [east - margin, south + margin],
        [east - margin, north - margin], [west + margin, north - margin],
        [west + margin, south + margin],
    ]  # fmt: skip
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def demo_corner_aoi(chip: Path) -> dict:
    """A small AOI: the chip's north-west part, one edge slanted, reaching a little past it.

    It covers about a fifth of the chip, so its statistics differ from the whole scene's,
    and it pokes out of the chip by well under the 5 % outside the model's region that
    batch inference allows unflagged: the item's geometry is then AOI ∩ the chip, not the AOI.
    """
    import rasterio

    with rasterio.open(chip) as src:
        west, south, east, north = src.bounds
    w, h = east - west, north - south
    ring = [
        [west - 0.005 * w, north + 0.005 * h], [west - 0.005 * w, north - 0.5 * h],
        [west + 0.30 * w, north - 0.5 * h], [west + 0.45 * w, north + 0.005 * h],
        [west - 0.005 * w, north + 0.005 * h],
    ]  # fmt: skip
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def _scene_stats(run: str) -> dict:
    """The statistics a run's item records (geomlops:stats), read from the catalog."""
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.collections import PREDICTIONS
    from geomlops.model import properties as prop

    with CatalogClient.from_settings() as catalog:
        return dict(catalog.get_item_dict(PREDICTIONS, run)["properties"][prop.STATS])


def _small_aoi_inference(settings: Settings) -> None:
    """The same model over a small part of the scene: outputs and statistics bounded by it."""
    from geomlops.sample_data import fetch

    chip = fetch(SEN1FLOODS11[0], settings=settings)
    outputs = LocalStack(settings).paths.outputs_dir
    aoi = outputs / "sen1floods11-corner-aoi.geojson"
    aoi.write_text(json.dumps(demo_corner_aoi(chip)))
    summary = json.loads(
        _geomlops(
            "infer", DEMO_MODEL, "--aoi", str(aoi), "--datetime", "2019-09-01/2019-09-30",
            "--json",
        )
    )  # fmt: skip
    run = summary["run"]
    (outputs / "last-aoi-run.txt").write_text(run + "\n")
    whole_run = (outputs / "last-inference-run.txt").read_text().strip()
    small, whole = _scene_stats(run), _scene_stats(whole_run)
    console.print(f"  {'':18} {'whole scene':>12} {'small AOI':>12}")
    for key in sorted(whole.keys() & small.keys()):  # per-class, no-data and cloud areas
        console.print(f"  {key:18} {whole[key]:>12} {small[key]:>12}")
    if small["water_area_km2"] >= whole["water_area_km2"]:
        raise RuntimeError("the small AOI's water area is not below the whole scene's")
    console.print(f"  mask, polygons and item {run} cover the AOI ∩ the scene only")


def _reproduce(settings: Settings) -> None:
    """Recompute the small-AOI prediction from its lineage and compare with what was published."""
    run = (LocalStack(settings).paths.outputs_dir / "last-aoi-run.txt").read_text().strip()
    report = json.loads(_geomlops("reproduce", run, "--json"))
    for scene in report["pixels"]:
        classes = ", ".join(f"{k} {v:.2%}" for k, v in scene["per_class"].items())
        console.print(f"  {scene['scene']}: {scene['identical']:.4%} identical pixels ({classes})")
    for name, iou in report["polygon_iou"].items():
        console.print(f"  polygons {name}: IoU {iou:.4f}")
    for warning in report["warnings"]:
        console.print(f"  [yellow]version differs[/]: {warning}")
    console.print(f"  [green]{report['rerun']} reproduces {run}[/]")


def _batch_inference(settings: Settings) -> None:
    """Ingest the chip as a scene, run the production model over its AOI, show the lineage."""
    from geomlops.sample_data import fetch

    chip, label = (
        fetch(SEN1FLOODS11[0], settings=settings),
        fetch(SEN1FLOODS11[2], settings=settings),
    )
    _geomlops("imagery", "add", str(chip), "--datetime", DEMO_SCENE_TIME)
    outputs = LocalStack(settings).paths.outputs_dir
    aoi = outputs / "sen1floods11-aoi.geojson"
    aoi.write_text(json.dumps(demo_aoi(chip)))
    _register_processors(settings)
    summary = json.loads(
        _geomlops(
            "infer", DEMO_MODEL, "--aoi", str(aoi), "--datetime", "2019-09-01/2019-09-30",
            "--reference", str(label), "--processor", DEMO_PROCESSOR, "--json",
        )
    )  # fmt: skip
    for mask, metrics in (summary.get("reference") or {}).items():
        console.print(
            f"  {mask}: water IoU {metrics['ref_iou_water']:.3f} against the hand label "
            f"({int(metrics['ref_compared_pixels'])} labelled pixels)"
        )
    _show_processor_results(summary)
    run = summary["run"]
    (outputs / "last-inference-run.txt").write_text(run + "\n")
    console.print(_geomlops("lineage", run), end="")
    (outputs / f"lineage-{run}.json").write_text(_geomlops("lineage", run, "--json"))


DEMO_PROCESSOR = "flood-area-by-country"
DEMO_PROCESSORS = {
    DEMO_PROCESSOR: "flood_area_by_country.py",
    "min-mapping-unit": "min_mapping_unit.py",
}


def _register_processors(settings: Settings) -> None:
    """Catalogue the example generic processors (the same script again: unchanged)."""
    from geomlops.sample_data import fetch
    from geomlops.settings.base import repo_dir

    folder = repo_dir("processors")
    if folder is None:
        raise RuntimeError("the demo registers the example processors of a geomlops checkout")
    countries = fetch("vector/countries.geojson", settings=settings)
    for name, script in DEMO_PROCESSORS.items():
        params = ["--param", f"countries={countries}"] if name == DEMO_PROCESSOR else []
        _geomlops("processor", "register", str(folder / script), "--name", name, *params)


def _show_processor_results(summary: dict) -> None:
    """Print each processor's result as the run stored it (its JSON in S3)."""
    from geomlops import objects

    conn = get_connections()
    for entry in (summary.get("processing") or {}).get("processors", []):
        result = objects.read_json(conn, entry["result"])
        console.print(f"  processor {entry['name']} v{entry['version']} ({entry['status']}):")
        for country in result.get("countries", []):
            console.print(f"    {country['country']:24} {country['area_km2']:10.4f} km² water")
        if "total_area_km2" in result:
            console.print(f"    {'total':24} {result['total_area_km2']:10.4f} km²")


def _serve_chip(settings: Settings) -> None:
    """Start the Seldon graph, send the Sen1Floods11 chip, keep the GeoJSON, stop the graph.

    Runs only when the model has a production version (the approval step makes one); the
    graph itself would answer 404 without one, which is no demo.
    """
    import base64
    import signal

    import httpx

    from geomlops.errors import NotFoundError
    from geomlops.model.resolve import resolve_model
    from geomlops.sample_data import fetch

    try:
        model = resolve_model(DEMO_MODEL, settings=settings)
    except NotFoundError as error:
        console.print(f"  [yellow]skipped: {error.message}[/]")
        return
    console.print(f"  [bold cyan]$ geomlops serve {DEMO_MODEL}[/]")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "geomlops"), "serve", DEMO_MODEL],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line:
            raise RuntimeError("`geomlops serve` did not start (see its messages above)")
        url = json.loads(line)["url"]
        chip = fetch(SEN1FLOODS11[0])
        console.print(f"  POST {url}/api/v1.0/predictions  (binData: {chip.name})")
        response = httpx.post(
            f"{url}/api/v1.0/predictions",
            json={"binData": base64.b64encode(chip.read_bytes()).decode()},
            timeout=300,
        )
        if response.status_code != 200:
            raise RuntimeError(f"the graph answered {response.status_code}: {response.text}")
        answer = response.json()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        if server.stdout:
            server.stdout.close()
    outputs = LocalStack(settings).paths.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)
    target = outputs / f"{DEMO_MODEL}-v{model.version}-{chip.stem}.geojson"
    partial = target.with_name(target.name + ".part")
    partial.write_text(json.dumps(answer["jsonData"]))
    partial.replace(target)
    for feature in answer["jsonData"]["features"]:
        props = feature["properties"]
        console.print(f"  {props['class_name']:10} {props['area_m2'] / 1e6:8.2f} km²")
    console.print(f"  tags {answer['meta']['tags']}")
    console.print(f"  [green]wrote[/] {target}  (open it in QGIS)")


MAP_WAIT_MS = 120_000
"""How long the demo's browser waits for the map to show the run (tiles render on 2 cores)."""


def _map(settings: Settings) -> None:
    """Print the map's link to the Sen1Floods11 run and look at it in a real browser.

    The screenshot is what a person opening the link sees: the scene, the class mask and the
    polygons over the offline basemap, with the lineage panel. Taken with Debian's chromium
    through Playwright, as the map's tests do; where either is missing the link is printed
    and the screenshot skipped, saying why.
    """
    import shutil

    run = (LocalStack(settings).paths.outputs_dir / "last-inference-run.txt").read_text().strip()
    url = f"{get_connections(settings).gateway_url}/map?run={run}"
    console.print(f"  map of {run}: [bold]{url}[/]")
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        console.print(
            "  [yellow]screenshot skipped: needs chromium and playwright (make install)[/]"
        )
        return
    target = LocalStack(settings).paths.outputs_dir / f"map-{run}.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.goto(url)
            page.wait_for_function(
                "run => window.geomlops && window.geomlops.shown === run",
                arg=run,
                timeout=MAP_WAIT_MS,
            )
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(target))
            polygons = page.evaluate("window.geomlops.polygons")
        finally:
            browser.close()
    console.print(f"  the map shows the scene, the mask, {polygons} polygon feature(s), lineage")
    console.print(f"  [green]wrote[/] {target}")


STEPS: list[DemoStep] = [
    DemoStep("Start the local stack", _start_stack),
    DemoStep("Register the model packages", _register_packages),
    DemoStep("Version the Sen1Floods11 data with DVC", _version_dataset),
    DemoStep("Train flood-water-s2 with the geomlops-train workflow", _train),
    DemoStep("Approve it as a second person", _promote),
    DemoStep("Show the lineage of the production model", _lineage),
    DemoStep("Batch inference over the Sen1Floods11 AOI, with its lineage", _batch_inference),
    DemoStep("Batch inference over a small AOI: the AOI bounds the result", _small_aoi_inference),
    DemoStep(
        "Train and approve cloud-s2 (s2cloudless, LightGBM) in its own environment", _cloud_model
    ),
    DemoStep("Composed pipeline: flood water where cloud-s2 sees clear sky", _composed_inference),
    DemoStep("Serve it: a Seldon graph answers with GeoJSON", _serve_chip),
    DemoStep("Reproduce the small-AOI prediction from its lineage", _reproduce),
    DemoStep("See the prediction on the map (works offline)", _map),
]


def run_demo(settings: Settings) -> None:
    """Run every step, then say where to look."""
    LocalStack(settings).paths.outputs_dir.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(STEPS, start=1):
        console.rule(f"[bold]{number}/{len(STEPS)} {step.title}")
        step.run(settings)
    summarise(settings)


def summarise(settings: Settings) -> None:
    """Print the URLs of the running stack and where the outputs are."""
    stack = LocalStack(settings)
    conn = get_connections(settings)
    console.rule("[bold]The stack is running")
    for status in stack.status():
        console.print(f"  {status.name:9} {status.url}  ({status.detail})")
    console.print(f"  STAC API      {conn.stac_url}  (browse: {conn.stac_url}/api.html)")
    console.print(f"  MLflow UI     {conn.mlflow_tracking_uri}")
    console.print(f"  map           {conn.gateway_url}/map")
    console.print(f'  S3 endpoint   {conn.s3_endpoint_url}  (keys: eval "$(geomlops env)")')
    console.print(f"  outputs       {stack.paths.outputs_dir}")
    console.print(f"  logs          {stack.paths.logs_dir}")
    console.print("  stop with     geomlops down   (data is kept for the next `geomlops up`)")
