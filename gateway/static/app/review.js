// The approver's review of a model version, over the map: its gates beside production's,
// the reference scene it was evaluated on with the hand label and both models' real
// predictions, and approve/reject with a reason. Every fact and every rule comes from the
// gateway (/map/api/review/…), which runs the CLI's governance code as the key's identity;
// this script only shows what it answers.
const $ = (id) => document.getElementById(id);
const state = { summary: null, images: {}, failed: {}, result: null, error: null };

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

function value(v) {
  return v === null || v === undefined ? "not measured" : Number(v).toFixed(4);
}

function mark(gate) {
  const cell = document.createElement("td");
  if (!gate) {
    cell.append(text("span", "—", "muted"));
    return cell;
  }
  cell.append(text("span", gate.met ? "✓ pass" : "✗ fail", gate.met ? "pass" : "fail"));
  cell.append(" ", text("span", value(gate.value)));
  if (gate.problem) cell.title = gate.problem;
  cell.dataset.met = String(gate.met);
  return cell;
}

function showFacts(s) {
  const facts = [
    ["model", `${s.name} v${s.version}`],
    ["stage", s.stage || "—"],
    ["trained by", s.trained_by || "—"],
    ["training run", s.workflow || "—"],
  ];
  if (s.approved_by) facts.push(["approved by", `${s.approved_by}: ${s.approval_reason || ""}`]);
  if (s.rejected_by) facts.push(["rejected by", `${s.rejected_by}: ${s.rejection_reason || ""}`]);
  $("review-facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [text("dt", k), text("dd", v)]),
  );
}

function showGates(s) {
  const production = s.production;
  $("review-candidate-head").textContent = `v${s.version} (${s.stage})`;
  $("review-production-head").textContent = production
    ? `production v${production.version}`
    : "production";
  $("review-evaluation").textContent = s.evaluation.run ? `evaluation run ${s.evaluation.run}` : "";
  const rows = s.gates.map((gate, i) => {
    const row = document.createElement("tr");
    row.dataset.metric = gate.metric;
    row.append(text("td", gate.metric), text("td", gate.gate), mark(gate));
    row.append(production ? mark(production.gates[i]) : text("td", "—", "muted"));
    return row;
  });
  if (!s.gates_declared) {
    const row = document.createElement("tr");
    const cell = text("td", "this model declares no gates: it cannot be promoted", "fail");
    cell.colSpan = 4;
    rows.push(row);
    row.append(cell);
  }
  if (!production && s.production_problem) {
    const row = document.createElement("tr");
    const cell = text("td", s.production_problem, "muted");
    cell.colSpan = 4;
    row.append(cell);
    rows.push(row);
  }
  $("review-gates").tBodies[0].replaceChildren(...rows);
}

async function explain(url) {
  // An image that did not load: the gateway's exception body says why.
  try {
    const response = await fetch(url, { headers: state.headers() });
    const body = await response.json();
    return body.detail || `${response.status}`;
  } catch (error) {
    return String(error.message || error);
  }
}

function figure(name, title, s) {
  const fig = document.createElement("figure");
  fig.id = `review-${name}`;
  const frame = document.createElement("div");
  frame.className = "frame";
  const url = s.pictures[name];
  const picture = document.createElement("img");
  picture.alt = title;
  picture.className = name === "image" ? "base" : "overlay";
  picture.addEventListener("load", () => {
    state.images[name] = { width: picture.naturalWidth, height: picture.naturalHeight };
  });
  picture.addEventListener("error", async () => {
    state.failed[name] = await explain(url);
    frame.replaceChildren(text("p", state.failed[name], "error"));
  });
  if (name !== "image") {
    const under = document.createElement("img");
    under.src = s.pictures.image;
    under.alt = "";
    under.className = "base dim";
    frame.append(under);
  }
  frame.append(picture);
  const scene = s.scene;
  if (scene && scene.holdout_columns) {
    const [start, stop] = scene.holdout_columns;
    const box = document.createElement("div");
    box.className = "holdout";
    box.style.left = `${(100 * start) / scene.width}%`;
    box.style.width = `${(100 * (stop - start)) / scene.width}%`;
    box.title = `held-out columns ${start}–${stop}: where evaluation measured the gates`;
    frame.append(box);
  }
  picture.src = url; // after the handlers: a cached picture may load at once
  fig.append(frame, text("figcaption", title));
  return fig;
}

function showPictures(s) {
  state.images = {};
  state.failed = {};
  const scene = s.scene;
  if (!scene) {
    $("review-scene").textContent = "";
    $("review-pictures").replaceChildren(text("p", s.scene_problem || "no reference scene", "error"));
    return;
  }
  const [start, stop] = scene.holdout_columns;
  $("review-scene").textContent =
    `${scene.dataset} ${scene.dataset_version} · ${scene.image} · label ${scene.label} · ` +
    `${scene.width}×${scene.height} px · held-out columns ${start}–${stop} (dashed)`;
  const production = s.production ? `production v${s.production.version}` : "production";
  $("review-pictures").replaceChildren(
    figure("image", `image (${scene.display_bands.join(", ")})`, s),
    figure("label", "hand label", s),
    figure("candidate", `candidate v${s.version}`, s),
    figure("production", production, s),
  );
  const items = s.legend.map((c) => {
    const item = text("span", c.color ? c.name : `${c.name} (clear: image shows)`);
    if (c.color) item.prepend(Object.assign(document.createElement("i"), { style: `background:${c.color}` }));
    return item;
  });
  const nolabel = text("span", "no label");
  nolabel.prepend(Object.assign(document.createElement("i"), { style: "background:#808080" }));
  $("review-legend").replaceChildren(...items, nolabel);
}

function showDecision(s) {
  const open = s.stage === "candidate";
  $("review-approve").disabled = !open;
  $("review-reject").disabled = !open;
  $("review-reason").disabled = !open;
  if (!open && !state.result) {
    $("review-result").textContent = `v${s.version} is ${s.stage}: only a candidate is decided on`;
    $("review-result").className = "muted";
  }
}

export async function openReview(itemId, headers) {
  state.headers = headers;
  state.result = null;
  state.error = null;
  $("review").hidden = false;
  $("review-title").textContent = `Review of ${itemId}`;
  $("review-result").textContent = "loading…";
  $("review-result").className = "muted";
  const response = await fetch(`/map/api/review/${encodeURIComponent(itemId)}`, { headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    state.error = body.detail || response.statusText;
    $("review-result").textContent = state.error;
    $("review-result").className = "error";
    return;
  }
  state.summary = body;
  $("review-result").textContent = "";
  showFacts(body);
  showGates(body);
  showPictures(body);
  showDecision(body);
}

async function decide(decision) {
  const s = state.summary;
  $("review-approve").disabled = $("review-reject").disabled = true;
  $("review-result").textContent = `${decision === "approve" ? "approving" : "rejecting"}…`;
  $("review-result").className = "muted";
  const response = await fetch(s.decision, {
    method: "POST",
    headers: { ...state.headers(), "Content-Type": "application/json" },
    body: JSON.stringify({ decision, reason: $("review-reason").value }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    state.error = body.detail || response.statusText;
    state.result = null;
    $("review-result").textContent = `refused (${response.status}): ${state.error}`;
    $("review-result").className = "error";
    showDecision(s);
    return;
  }
  const run = body.training_run;
  await openReview(s.id, state.headers); // the version as it is now
  state.result = body;
  $("review-result").textContent =
    `${body.action} v${body.version} by ${body.actor}: now ${body.stage}; audit entry #${body.audit_entry}` +
    (run ? `; training run ${run.run} ${run.phase || run.problem || "not waiting"}` : "");
  $("review-result").className = "done";
  window.dispatchEvent(new CustomEvent("geomlops:decided", { detail: body }));
}

$("review-approve").addEventListener("click", () => decide("approve"));
$("review-reject").addEventListener("click", () => decide("reject"));
$("review-close").addEventListener("click", () => { $("review").hidden = true; });

export { state as reviewState };
