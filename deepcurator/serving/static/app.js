// Upload the chosen file to /predict, then show the score and a bar chart of the slices.
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

document.getElementById("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("audio").files[0];
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  if (!file) return;
  status.className = "";
  status.textContent = `Rating ${file.name}…`;
  result.hidden = true;
  const form = new FormData();
  form.append("audio", file);
  try {
    const response = await fetch("predict", { method: "POST", body: form, headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    document.getElementById("score").textContent = body.score.toFixed(2);
    const label = document.getElementById("label");
    label.textContent = body.label;
    label.className = body.label;
    document.getElementById("details").textContent =
      `${file.name}: ${body.duration_s.toFixed(1)} s, ${body.slices.length} slices` + (body.truncated ? " (truncated)" : "");
    drawChart(document.getElementById("chart"), body.slices, body.duration_s);
    status.textContent = "";
    result.hidden = false;
  } catch (err) {
    status.className = "error";
    status.textContent = `Error: ${err.message}`;
  }
});
