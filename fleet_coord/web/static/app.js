// The operator page: draws /api/ws pushes (map once, then state) and sends operator
// actions through the HTTP API (docs/operator-view.md). No build step, no framework.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let map = null, bounds = null, colorOf = {}, stationLayerDone = false;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs, parent) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
};
// map frame (x right, y up, REP-103) -> SVG (y down)
const sx = (x) => x - bounds[0];
const sy = (y) => bounds[3] - y;
// ROS time: wall time (epoch seconds) as a time of day, sim time as seconds since start
const fmtT = (t) => (t === null || t === undefined) ? "" : t > 1e9
  ? new Date(t * 1000).toLocaleTimeString([], {hour12: false}) : `${t.toFixed(1)} s`;

function robotColor(name) {
  if (!(name in colorOf)) colorOf[name] = COLORS[Object.keys(colorOf).length % COLORS.length];
  return colorOf[name];
}

function drawMap(doc) {
  map = doc;
  bounds = doc.bounds;
  const svg = $("map");
  svg.setAttribute("viewBox", `0 0 ${bounds[2] - bounds[0]} ${bounds[3] - bounds[1]}`);
  $("map-title").textContent = doc.title || "";
  const obst = $("layer-obstacles"), lanes = $("layer-lanes"), st = $("layer-stations");
  obst.replaceChildren(); lanes.replaceChildren(); st.replaceChildren();
  for (const [x, y] of doc.obstacles)
    el("rect", {x: sx(x) - 0.5, y: sy(y) - 0.5, width: 1, height: 1, fill: "#90a4ae"}, obst);
  for (const [u, v] of doc.lanes) {
    const a = doc.vertices[u], b = doc.vertices[v];
    el("line", {x1: sx(a[0]), y1: sy(a[1]), x2: sx(b[0]), y2: sy(b[1]),
                stroke: "#cfd8dc", "stroke-width": 0.06}, lanes);
  }
  for (const s of doc.stations) {
    el("rect", {x: sx(s.x) - 0.2, y: sy(s.y) - 0.2, width: 0.4, height: 0.4,
                fill: "#ffe082", stroke: "#8d6e63", "stroke-width": 0.04,
                class: "station", "data-station": s.name}, st);
    const t = el("text", {x: sx(s.x) + 0.25, y: sy(s.y) - 0.25, class: "station-label"}, st);
    t.textContent = s.name;
  }
}

function nearestVertex(x, y) {
  let best = -1, bd = Infinity;
  map.vertices.forEach(([vx, vy], i) => {
    const d = (vx - x) ** 2 + (vy - y) ** 2;
    if (d < bd) { bd = d; best = i; }
  });
  return best < 0 ? null : map.names[best];
}

$("map").addEventListener("click", (ev) => {
  if (!map) return;
  const svg = $("map"), pt = svg.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  const name = nearestVertex(p.x + bounds[0], bounds[3] - p.y);
  if (name === null) return;
  const input = $("task-stations");
  input.value = (input.value.trim() + " " + name).trim();
});

function drawState(doc) {
  $("clock").textContent = (doc.t > 1e9 ? "" : "sim time ") + fmtT(doc.t);
  const res = $("layer-reservations"), rob = $("layer-robots");
  res.replaceChildren(); rob.replaceChildren();
  for (const r of doc.robots) {
    const c = robotColor(r.name);
    r.reservations.forEach((h, k) => {
      const opacity = Math.max(0.12, 0.45 - 0.02 * k);
      if (h.at) {
        el("rect", {x: sx(h.at[0]) - 0.4, y: sy(h.at[1]) - 0.4, width: 0.8, height: 0.8,
                    fill: c, "fill-opacity": opacity, class: "hold", "data-robot": r.name}, res);
      } else {
        el("line", {x1: sx(h.from[0]), y1: sy(h.from[1]), x2: sx(h.to[0]), y2: sy(h.to[1]),
                    stroke: c, "stroke-opacity": opacity + 0.2, "stroke-width": 0.25,
                    "stroke-linecap": "round", class: "hold", "data-robot": r.name}, res);
      }
    });
    const g = el("g", {class: "robot", "data-robot": r.name, "data-x": r.x.toFixed(3),
                       "data-y": r.y.toFixed(3), "data-mode": r.mode,
                       transform: `translate(${sx(r.x)} ${sy(r.y)})`}, rob);
    el("circle", {r: 0.32, fill: r.mode === "LOST" ? "#9e9e9e" : c, stroke: "#263238",
                  "stroke-width": r.estop ? 0.12 : 0.04}, g);
    el("line", {x1: 0, y1: 0, x2: 0.32 * Math.cos(r.yaw), y2: -0.32 * Math.sin(r.yaw),
                stroke: "#fff", "stroke-width": 0.08}, g);
    const t = el("text", {x: 0.38, y: -0.3, class: "robot-label", fill: c}, g);
    t.textContent = r.name;
  }
  drawRobotTable(doc.robots);
  drawTaskTable(doc.tasks);
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function cells(tr, values) {
  for (const [cls, v] of values) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = v;
    tr.appendChild(td);
  }
}

function drawRobotTable(robots) {
  const body = $("robots").tBodies[0];
  body.replaceChildren();
  for (const r of robots) {
    const tr = document.createElement("tr");
    tr.dataset.robot = r.name; tr.dataset.mode = r.mode;
    cells(tr, [["name", r.name], ["mode mode-" + r.mode, r.estop ? `${r.mode} (e-stop)` : r.mode],
               ["", r.battery === null ? "–" : `${Math.round(r.battery * 100)}%`],
               ["", r.task || "–"], ["", String(r.queued.length)],
               ["", String(r.reservations.length)]]);
    const td = document.createElement("td");
    td.appendChild(button(r.estop ? "Release" : "E-stop", "estop" + (r.estop ? " engaged" : ""),
                          () => act(`/api/robots/${encodeURIComponent(r.name)}/estop`,
                                    {engage: !r.estop})));
    td.appendChild(button("Remove", "remove", () => {
      if (confirm(`Take ${r.name} out of the fleet?`))
        act(`/api/robots/${encodeURIComponent(r.name)}/remove`, {force: true});
    }));
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function drawTaskTable(tasks) {
  const body = $("tasks").tBodies[0];
  body.replaceChildren();
  for (const t of tasks.slice().reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.task = t.id; tr.dataset.state = t.state;
    cells(tr, [["id", t.id], ["", t.kind], ["", t.stations.join(" → ")],
               ["state", t.state + (t.reason ? ` (${t.reason})` : "")], ["robot", t.robot || "–"],
               ["", `${Math.round(t.progress * 100)}%`], ["", fmtT(t.submitted)],
               ["", fmtT(t.started)], ["", fmtT(t.ended)]]);
    const td = document.createElement("td");
    if (!["DONE", "FAILED", "CANCELLED"].includes(t.state)) {
      const b = button("Cancel", "cancel", () =>
        act(`/api/tasks/${encodeURIComponent(t.id)}/cancel`, {}));
      b.dataset.task = t.id;
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function post(url, body) {
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {error: `HTTP ${resp.status}`}; }
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

async function act(url, body) {
  $("action-message").textContent = "";
  try {
    const data = await post(url, body);
    $("action-message").textContent = data.message || "done";
    $("task-error").textContent = "";
  } catch (e) {
    $("task-error").textContent = e.message;
  }
}

$("task-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("task-error").textContent = "";
  const task = {id: $("task-id").value.trim(), kind: $("task-kind").value,
                stations: $("task-stations").value.trim().split(/\s+/).filter(Boolean),
                priority: parseInt($("task-priority").value || "0", 10)};
  try {
    const data = await post("/api/tasks", task);
    $("action-message").textContent = `accepted ${data.task_id}`;
    $("task-id").value = ""; $("task-stations").value = "";
  } catch (e) {
    $("task-error").textContent = e.message;
  }
});

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`);
  ws.onopen = () => { $("connection").textContent = "live"; $("connection").className = "up"; };
  ws.onmessage = (ev) => {
    const doc = JSON.parse(ev.data);
    if (doc.type === "map") drawMap(doc);
    else if (doc.type === "state" && map) drawState(doc);
  };
  ws.onclose = () => {
    $("connection").textContent = "disconnected; retrying…"; $("connection").className = "down";
    setTimeout(connect, 1000);
  };
}
connect();
