// The gateway's map page: models, an area, dates, a batch-inference job, its layers.
// Every request goes to the gateway that served this page (no CDN, no tile server on the
// internet): MapLibre from /vendor, the basemap from /map/basemap.geojson, tiles and
// assets from /collections/…, jobs through OGC API - Processes.
import * as maplibregl from "/vendor/maplibre-gl/maplibre-gl.mjs";
import { openReview, reviewState } from "/map/static/review.js";

const $ = (id) => document.getElementById(id);
const state = { aoi: null, corner: null, drawing: false, job: null };
window.geomlops = state; // what the browser tests read
state.review = reviewState;

const map = new maplibregl.Map({
  container: "map",
  style: {
    version: 8,
    sources: { countries: { type: "geojson", data: "/map/basemap.geojson" } },
    layers: [
      { id: "sea", type: "background", paint: { "background-color": "#cfe3f2" } },
      { id: "land", type: "fill", source: "countries", paint: { "fill-color": "#f4f1ea" } },
      {
        id: "borders", type: "line", source: "countries",
        paint: { "line-color": "#9a9385", "line-width": 0.6 },
      },
    ],
  },
  center: [0, 30],
  zoom: 1.5,
  attributionControl: false,
});
map.addControl(new maplibregl.NavigationControl(), "top-right");
map.on("load", () => { state.loaded = true; });
state.map = map;

function headers(json = false) {
  const h = { "X-API-Key": $("key").value.trim() };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function getJson(url, options = {}) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// --- models ---------------------------------------------------------------------------
async function loadModels() {
  const models = await getJson("/map/api/models");
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = JSON.stringify(m);
    option.textContent = `${m.name} v${m.version} (${m.stage})`;
    if (m.stage === "production" && !select.querySelector("[selected]")) option.selected = true;
    select.appendChild(option);
  }
  showModel();
}

function showModel() {
  if (!$("model").value) return;
  const m = JSON.parse($("model").value);
  $("model-info").textContent =
    `task: ${m.tasks.join(", ") || "?"} · bands: ${m.bands.join(", ") || "?"}`;
}
$("model").addEventListener("change", showModel);

// --- the approver's review of the chosen version (or of ?review=NAME-mvN) ---------------
function review(itemId) {
  openReview(itemId, headers).catch((error) => say(`review: ${error.message}`, true));
}
window.addEventListener("geomlops:decided", () => {
  loadModels().catch((error) => say(`models: ${error.message}`, true)); // stages changed
});
$("review-open").addEventListener("click", () => {
  if ($("model").value) review(JSON.parse($("model").value).id);
});

// --- drawing an area: two clicks, a rectangle -----------------------------------------
function setAoi(ring) {
  state.aoi = { type: "Polygon", coordinates: [ring] };
  const data = { type: "Feature", properties: {}, geometry: state.aoi };
  if (map.getSource("aoi")) map.getSource("aoi").setData(data);
  else {
    map.addSource("aoi", { type: "geojson", data });
    map.addLayer({
      id: "aoi", type: "line", source: "aoi",
      paint: { "line-color": "#d00", "line-width": 2, "line-dasharray": [2, 1] },
    });
  }
  $("aoi-info").textContent = ring.slice(0, 4).map((c) => c.map((v) => v.toFixed(3)).join(",")).join(" ");
  $("run").disabled = false;
}

$("draw").addEventListener("click", () => {
  state.drawing = true;
  state.corner = null;
  map.getCanvas().style.cursor = "crosshair";
  $("aoi-info").textContent = "click the first corner";
});

map.on("click", (event) => {
  if (!state.drawing) return;
  const { lng, lat } = event.lngLat;
  if (!state.corner) {
    state.corner = [lng, lat];
    $("aoi-info").textContent = "click the opposite corner";
    return;
  }
  const [x0, y0] = state.corner;
  const [w, e] = [Math.min(x0, lng), Math.max(x0, lng)];
  const [s, n] = [Math.min(y0, lat), Math.max(y0, lat)];
  state.drawing = false;
  map.getCanvas().style.cursor = "";
  setAoi([[w, s], [e, s], [e, n], [w, n], [w, s]]);
});

// --- running a job ------------------------------------------------------------------------
$("run").addEventListener("click", async () => {
  const model = JSON.parse($("model").value);
  const inputs = {
    model: model.name,
    version: String(model.version),
    aoi: state.aoi,
    datetime: `${$("start").value}/${$("end").value}`,
    "allow-outside-region": $("outside").checked,
  };
  $("run").disabled = true;
  try {
    const response = await fetch("/processes/batch-inference/execution", {
      method: "POST",
      headers: { ...headers(true), Prefer: "respond-async" },
      body: JSON.stringify({ inputs }),
    });
    const body = await response.json();
    if (response.status !== 201) throw new Error(body.detail || response.statusText);
    state.job = body.jobID;
    say(`job ${body.jobID}: ${body.status}`);
    await follow(response.headers.get("Location"));
  } catch (error) {
    say(String(error.message || error), true);
  } finally {
    $("run").disabled = false;
  }
});

async function follow(location) {
  $("progress").hidden = false;
  for (;;) {
    const info = await getJson(location, { headers: headers() });
    $("progress").value = info.progress || 0;
    const t = info.tasks || {};
    $("tasks").textContent =
      `tiles ${t.succeeded}/${t.total} done, ${t.failed} failed, ${t.waiting} waiting`;
    say(`job ${info.jobID}: ${info.status}`);
    if (info.status === "successful") return showResults(info.jobID);
    if (!["accepted", "running"].includes(info.status)) throw new Error(info.message || info.status);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// --- results --------------------------------------------------------------------------
function itemPath(href) {
  return new URL(href).pathname.split("/assets/")[0];
}

function addRaster(id, tiles, opacity, before) {
  if (map.getLayer(id)) map.removeLayer(id);
  if (map.getSource(id)) map.removeSource(id);
  map.addSource(id, { type: "raster", tiles: [tiles], tileSize: 256 });
  map.addLayer({ id, type: "raster", source: id, paint: { "raster-opacity": opacity } }, before);
}

async function showResults(job) {
  const results = await getJson(`/jobs/${job}/results`, { headers: headers() });
  await showOutputs(results);
  say(`job ${job}: successful`);
  state.shown = job;
}

// A published run's outputs, e.g. from the link the demo prints: /map?run=RUN.
async function showRun(run) {
  await showOutputs(await getJson(`/map/api/runs/${encodeURIComponent(run)}`));
  say(`run ${run}`);
  state.shown = run;
}

async function showOutputs(results) {
  const tms = "tiles/WebMercatorQuad/{z}/{x}/{y}.png";
  const origin = window.location.origin;
  const before = map.getLayer("aoi") ? "aoi" : undefined;
  const items = [];
  for (const mask of results.masks) items.push(await getJson(itemPath(mask.href)));
  if (items.length) {
    // Move first, without animation: tiles asked for on the way would be cancelled.
    const [w, s, e, n] = items[0].bbox;
    map.fitBounds([[w, s], [e, n]], { padding: 40, animate: false });
  }
  for (const [i, item] of items.entries()) {
    const scene = item.properties["geomlops:scene"];
    const imagery = `${origin}/collections/imagery/items/${scene}/${tms}` +
      "?assets=image%7Cbidx%3D4%2C3%2C2&rescale=0%2C3000";
    addRaster(`imagery-${i}`, imagery, 1, before);
    addRaster(`mask-${i}`, `${origin}${itemPath(results.masks[i].href)}/assets/mask/${tms}`,
      Number($("opacity").value), before);
  }
  const polygons = await getJson(results.polygons.href);
  if (map.getSource("polygons")) map.getSource("polygons").setData(polygons);
  else {
    map.addSource("polygons", { type: "geojson", data: polygons });
    map.addLayer({
      id: "polygons", type: "line", source: "polygons",
      paint: { "line-color": "#ffd400", "line-width": 1.5 },
    });
    map.addLayer({
      id: "polygons-fill", type: "fill", source: "polygons",
      paint: { "fill-color": "#ffd400", "fill-opacity": 0.05 },
    });
    map.on("click", "polygons-fill", showPopup);
  }
  $("layers").hidden = false;
  state.layers = map.getStyle().layers.map((l) => l.id);
  state.polygons = polygons.features.length;
  await showLineage(itemPath(results.polygons.href).split("/").pop());
}

function showPopup(event) {
  if (state.drawing) return;
  const p = event.features[0].properties;
  const rows = [
    ["class", `${p.class_name} (${p.class_value})`],
    ["area", `${(p.area_m2 / 1e6).toFixed(4)} km²`],
    ["confidence", p.mean_confidence === undefined ? "n/a" : Number(p.mean_confidence).toFixed(3)],
    ["scene", p.scene],
  ];
  const html = rows.map(([k, v]) => `<b>${k}</b> ${v}`).join("<br>");
  state.popup = new maplibregl.Popup().setLngLat(event.lngLat).setHTML(html).addTo(map);
}

async function showLineage(item) {
  const l = await getJson(`/map/api/lineage/${encodeURIComponent(item)}`);
  const rows = [
    ["model", `${l.model.name} v${l.model.version} (${l.model.stage})`],
    ["approved by", `${l.model.approved_by || "—"} ${l.model.approved_at || ""}`],
    ["reason", l.model.approval_reason || "—"],
    ["trained by", l.model.trained_by || "—"],
    ["dataset", `${l.dataset.name || "—"} ${l.dataset.version || ""}`],
    ["code", l.model.git_commit || "—"],
    ["image", l.model.image || "—"],
    ["workflow run", (l.workflow.runs || [l.workflow.run]).join(", ")],
    ["software", Object.entries(l.software).map(([k, v]) => `${k} ${v}`).join(", ")],
    ["scenes", l.scenes.map((s) => s.id).join(", ")],
  ];
  $("lineage-list").innerHTML = "";
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    $("lineage-list").append(dt, dd);
  }
  $("downloads").innerHTML = "";
  for (const d of l.downloads) {
    const a = document.createElement("a");
    a.href = d.href;
    a.textContent = d.title;
    a.download = "";
    const li = document.createElement("li");
    li.appendChild(a);
    $("downloads").appendChild(li);
  }
  $("lineage").hidden = false;
  state.lineage = l;
}

function toggle(prefix, visible) {
  for (const layer of map.getStyle().layers) {
    if (layer.id.startsWith(prefix)) {
      map.setLayoutProperty(layer.id, "visibility", visible ? "visible" : "none");
    }
  }
}
$("show-imagery").addEventListener("change", (e) => toggle("imagery-", e.target.checked));
$("show-mask").addEventListener("change", (e) => toggle("mask-", e.target.checked));
$("show-polygons").addEventListener("change", (e) => toggle("polygons", e.target.checked));
$("opacity").addEventListener("input", (e) => {
  for (const layer of map.getStyle().layers) {
    if (layer.id.startsWith("mask-")) map.setPaintProperty(layer.id, "raster-opacity", Number(e.target.value));
  }
});

$("key").value = localStorage.getItem("geomlops-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("geomlops-key", $("key").value));
loadModels().catch((error) => say(`models: ${error.message}`, true));
const params = new URLSearchParams(window.location.search);
const linkedRun = params.get("run");
if (linkedRun) {
  const shown = () => showRun(linkedRun).catch((error) => say(`run ${linkedRun}: ${error.message}`, true));
  if (map.loaded()) shown();
  else map.once("load", shown);
}
const asked = params.get("review");
if (asked) review(asked);
