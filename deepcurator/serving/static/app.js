// Rate one file or a batch: each file is posted to /predict in turn, its row joins a table
// sorted by score as the answers come, and a row opens the chart of its slices' scores.
"use strict";
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One bar per slice: x = time along the track (s), height = slice score (0-100).
function drawChart(svg, slices, duration) {
  const W = 720, H = 220, L = 36, R = 10, T = 10, B = 28;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const end = Math.max(duration, slices.length ? slices[slices.length - 1].end : 1);
  const x = (t) => L + (t / end) * (W - L - R);
  const y = (s) => T + (1 - s / 100) * (H - T - B);
  for (const s of [0, 50, 100]) {
    svg.append(el("line", { class: s === 50 ? "threshold" : "axis", x1: L, x2: W - R, y1: y(s), y2: y(s) }));
    svg.append(el("text", { x: L - 6, y: y(s) + 4, "text-anchor": "end" }, String(s)));
  }
  for (const s of slices) {
    const bar = el("rect", { class: "bar", x: x(s.start) + 1, y: y(s.score), width: Math.max(1, x(s.end) - x(s.start) - 2),
                             height: y(0) - y(s.score) });
    bar.append(el("title", {}, `${s.start.toFixed(0)}-${s.end.toFixed(0)} s: ${s.score.toFixed(2)}`));
    svg.append(bar);
  }
  const step = end > 600 ? 120 : end > 240 ? 60 : 30;
  for (let t = 0; t <= end; t += step) {
    svg.append(el("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}`));
  }
}

const $ = (id) => document.getElementById(id);
let tracks = [];   // {name, state: "pending"|"scored"|"failed", body?, error?, order}
let opened = null; // the track whose chart is shown
let batchId = 0;   // a new batch stops the rows of the previous one from being updated

function show(track) {
  opened = track;
  const body = track.body;
  $("score").textContent = body.score.toFixed(2);
  const label = $("label");
  label.textContent = body.label;
  label.className = body.label;
  $("details").textContent =
    `${track.name}: ${body.duration_s.toFixed(1)} s, ${body.slices.length} slices` + (body.truncated ? " (truncated)" : "");
  drawChart($("chart"), body.slices, body.duration_s);
  $("result").hidden = false;
  renderTable();
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

// Scored tracks by score (best first), then the ones still waiting, then the failed ones.
function renderTable() {
  const rank = { scored: 0, pending: 1, failed: 2 };
  const sorted = [...tracks].sort((a, b) => rank[a.state] - rank[b.state]
    || (a.state === "scored" ? b.body.score - a.body.score : 0) || a.order - b.order);
  const tbody = $("batch").tBodies[0];
  tbody.replaceChildren();
  sorted.forEach((t, i) => {
    const row = tbody.insertRow();
    row.className = t.state + (t === opened ? " open" : "");
    row.dataset.file = t.name;
    cell(row, String(i + 1), "num");
    if (t.state === "scored") {
      cell(row, t.body.score.toFixed(2), "num score");
      cell(row, t.body.label, t.body.label);
      cell(row, `${t.body.duration_s.toFixed(1)} s`, "num");
      cell(row, t.name, "file");
      row.title = "show the slices' scores";
      row.addEventListener("click", () => show(t));
    } else if (t.state === "failed") {
      cell(row, "failed", "score");
      cell(row, "", "");
      cell(row, "", "");
      cell(row, `${t.name}: ${t.error}`, "file");
    } else {
      cell(row, "…", "score");
      cell(row, "", "");
      cell(row, "", "");
      cell(row, t.name, "file");
    }
  });
}

async function rateOne(file) {
  const form = new FormData();
  form.append("audio", file);
  const response = await fetch("predict", { method: "POST", body: form, headers: { Accept: "application/json" } });
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`HTTP ${response.status}`);
  }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function rateBatch(files) {
  if (!files.length) return;
  const id = ++batchId;
  const status = $("status");
  status.className = "";
  $("result").hidden = true;
  opened = null;
  tracks = files.map((f, i) => ({ name: f.name, state: "pending", order: i }));
  $("batch-section").hidden = false;
  const progress = $("progress");
  progress.max = files.length;
  progress.value = 0;
  renderTable();
  let failed = 0;
  for (let i = 0; i < files.length; i++) {
    if (id !== batchId) return;
    status.textContent = `Rating ${files[i].name}…`;
    $("progress-text").textContent = `${i} of ${files.length} rated`;
    const track = tracks[i];
    try {
      track.body = await rateOne(files[i]);
      track.state = "scored";
    } catch (err) {
      track.state = "failed";
      track.error = err.message;
      failed++;
    }
    if (id !== batchId) return;
    progress.value = i + 1;
    $("progress-text").textContent = `${i + 1} of ${files.length} rated` + (failed ? `, ${failed} failed` : "");
    if (track.state === "scored" && opened === null) show(track);
    else renderTable();
  }
  if (files.length === 1 && failed) {
    status.className = "error";
    status.textContent = `Error: ${tracks[0].error}`;
  } else if (failed === files.length) {
    status.className = "error";
    status.textContent = `Error: none of the ${files.length} files could be rated`;
  } else {
    status.textContent = files.length > 1 ? `Rated ${files.length - failed} of ${files.length} files; click a row for its slices.` : "";
  }
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  rateBatch([...$("audio").files]);
});

const drop = $("drop");
for (const kind of ["dragenter", "dragover"]) {
  drop.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  rateBatch([...event.dataTransfer.files]);
});

// The model's identity, from /health (and whether it learnt from the synthetic demo corpus, when the server says).
fetch("health").then((r) => r.json()).then((health) => {
  const model = health.model || {};
  const note = $("model-id");
  let text = `model run ${health.run_id}, aggregation ${health.aggregation}`;
  if (model.trained_on) text += `, trained on ${model.trained_on}`;
  if (model.synthetic_demo) {
    text += " — the synthetic demo corpus, not real music: its scores say nothing about real tracks";
    note.classList.add("synthetic");
  }
  note.textContent = text;
}).catch(() => {});
