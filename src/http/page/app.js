// sluice's page: the metric tree, graphs and the agent's own numbers, all
// from the public API (/metrics/find, /render, /metrics), so whatever it
// shows a dashboard tool sees too. No library, no request off this host.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const $ = (id) => document.getElementById(id);
let refresh = null;
let tapSource = null;
// The time the graph's cursor is at (keyboard), or null.
let cursorAt = null;
// Tapped lines kept on the page.
const TAP_KEEP = 500;

function state() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { view: p.get("view") || "graph", targets: p.getAll("target"), from: p.get("from") || "-1h", until: p.get("until") || "now", pattern: p.get("pattern") || "*" };
}

function setState(s) {
  const p = new URLSearchParams();
  p.set("view", s.view);
  s.targets.forEach((t) => p.append("target", t));
  p.set("from", s.from);
  if (s.until && s.until !== "now") p.set("until", s.until);
  if (s.view === "tap") p.set("pattern", s.pattern);
  location.hash = p.toString();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
  children.forEach((c) => e.append(c));
  return e;
}

async function find(query) {
  const r = await fetch("/metrics/find?query=" + encodeURIComponent(query));
  if (!r.ok) throw new Error(await r.text());
  return r.json();
}

function treeItem(node) {
  const li = el("li", { role: "treeitem" });
  const b = el("button", { type: "button", class: node.leaf ? "leaf" : "branch", "data-path": node.id }, node.text);
  li.append(b);
  if (node.leaf) {
    b.addEventListener("click", () => {
      const s = state();
      setState({ ...s, view: "graph", targets: [...s.targets.filter((t) => t !== node.id), node.id] });
    });
  } else {
    openable(li, b, async () => (await find(node.id + ".*")).map(treeItem));
  }
  return li;
}

// A branch of either tree: a click shows what `load` gives, or hides it.
function openable(li, b, load) {
  b.setAttribute("aria-expanded", "false");
  b.addEventListener("click", async () => {
    const open = b.getAttribute("aria-expanded") === "true";
    const old = li.querySelector(":scope > ul");
    if (old) old.remove();
    b.setAttribute("aria-expanded", String(!open));
    if (!open) li.append(await group(load));
  });
}

// The items `load` gives as a tree group, or its error in their place.
async function group(load) {
  const ul = el("ul", { role: "group" });
  try {
    (await load()).forEach((item) => ul.append(item));
  } catch (e) {
    ul.append(el("li", {}, String(e.message)));
  }
  return ul;
}

async function showTree(query) {
  const tree = $("tree");
  const ul = await group(async () => (await find(query)).map(treeItem));
  tree.replaceChildren(...ul.children);
}

// Tagged series by tag: tag, then its values, then the series holding it.
function tagBranch(label, path, load) {
  const li = el("li", { role: "treeitem" });
  const b = el("button", { type: "button", class: "branch", "data-tag-path": path }, label);
  li.append(b);
  openable(li, b, load);
  return li;
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
  return r.json();
}

async function showTags() {
  const tree = $("tag-tree");
  try {
    const tags = await getJson("/tags");
    tree.replaceChildren(...tags.map(({ tag }) => tagBranch(tag, tag, async () => {
      const detail = await getJson("/tags/" + encodeURIComponent(tag));
      return detail.values.map(({ value, count }) => {
        const expr = `${tag}=${value}`;
        return tagBranch(`${value} (${count})`, expr, async () => {
          const names = await getJson("/tags/findSeries?expr=" + encodeURIComponent(expr));
          // A tagged name is a target as it stands.
          return names.map((name) => treeItem({ id: name, text: name, leaf: 1 }));
        });
      });
    })));
    $("tags-heading").hidden = !tags.length;
  } catch (e) {
    tree.replaceChildren(el("li", {}, String(e.message)));
  }
}

// Arrow keys in a tree, as in any file browser: up and down through what
// is shown, right opens (or steps in), left closes (or steps out).
function treeKeys(e) {
  const here = e.target.closest("button");
  if (!here) return;
  const tree = e.currentTarget;
  const shown = [...tree.querySelectorAll("button")].filter((b) => b.offsetParent !== null);
  const i = shown.indexOf(here);
  const open = here.getAttribute("aria-expanded");
  let next = null;
  if (e.key === "ArrowDown") next = shown[i + 1];
  else if (e.key === "ArrowUp") next = shown[i - 1];
  else if (e.key === "Home") next = shown[0];
  else if (e.key === "End") next = shown[shown.length - 1];
  else if (e.key === "ArrowRight") {
    if (open === "false") here.click();
    else if (open === "true") next = here.parentElement.querySelector(":scope > ul button");
  } else if (e.key === "ArrowLeft") {
    if (open === "true") here.click();
    else next = here.parentElement.parentElement.closest("li")?.querySelector(":scope > button");
  } else return;
  e.preventDefault();
  if (next) next.focus();
}

function fmt(v) {
  if (v === null) return "null";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toPrecision(3) + "G";
  if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
  if (a >= 1e3) return (v / 1e3).toPrecision(3) + "k";
  return String(Math.round(v * 1000) / 1000);
}

function iso(ts) {
  return new Date(ts * 1000).toISOString().replace(".000Z", "Z");
}

function chart(series) {
  const W = 900, H = 300, L = 60, B = 24;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "graph of " + series.map((s) => s.target).join(", "));
  const points = series.flatMap((s) => s.datapoints);
  const values = points.map((p) => p[0]).filter((v) => v !== null && isFinite(v));
  const times = points.map((p) => p[1]);
  if (!times.length) return svg;
  const t0 = Math.min(...times), t1 = Math.max(...times);
  let lo = values.length ? Math.min(0, ...values) : 0, hi = values.length ? Math.max(...values) : 1;
  if (hi === lo) hi = lo + 1;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 10);
  const y = (v) => H - B - ((v - lo) / (hi - lo)) * (H - B - 10);
  const line = (x1, y1, x2, y2) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, class: "axis" }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const text = (tx, ty, s, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("text-anchor", anchor);
    t.textContent = s;
    svg.append(t);
  };
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    line(L, y(v), W - 10, y(v));
    text(L - 4, y(v) + 4, fmt(v), "end");
  }
  text(L, H - 6, iso(t0), "start");
  text(W - 10, H - 6, iso(t1), "end");
  series.forEach((s, i) => {
    // A null ends a segment: gaps are drawn as gaps.
    let d = "", pen = false;
    s.datapoints.forEach(([v, t]) => {
      if (v === null || !isFinite(v)) { pen = false; return; }
      d += (pen ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1) + " ";
      pen = true;
    });
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d.trim());
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", COLORS[i % COLORS.length]);
    path.setAttribute("stroke-width", "1.5");
    svg.append(path);
  });
  return svg;
}

function dataTables(series) {
  return series.map((s) => {
    const rows = s.datapoints.map(([v, t]) => el("tr", {}, el("td", {}, iso(t)), el("td", { "data-value": v === null ? "null" : String(v) }, v === null ? "null" : String(v))));
    return el("table", { class: "series-data", "data-target": s.target },
      el("caption", {}, s.target),
      el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "value"))),
      el("tbody", {}, ...rows));
  });
}

async function draw() {
  const s = state();
  $("target").value = s.targets.join(", ");
  $("range").value = s.from;
  $("until").value = s.until;
  const err = $("error");
  if (!s.targets.length) return;
  const q = new URLSearchParams({ format: "json", from: s.from, until: s.until });
  s.targets.forEach((t) => q.append("target", t));
  const r = await fetch("/render?" + q.toString());
  if (!r.ok) {
    err.textContent = `${r.status}: ${await r.text()}`;
    err.hidden = false;
    return;
  }
  err.hidden = true;
  const series = await r.json();
  const svg = chart(series);
  $("chart").replaceChildren(svg);
  // The values at time `t`, one per series, under the pointer or the
  // arrow keys.
  const times = series.flatMap((x) => x.datapoints.map((p) => p[1]));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const step = series.length && series[0].datapoints.length > 1 ? series[0].datapoints[1][1] - series[0].datapoints[0][1] : 60;
  const showAt = (t) => {
    cursorAt = Math.max(t0, Math.min(t1, t));
    const at = series.map((x) => {
      const near = x.datapoints.reduce((a, p) => (Math.abs(p[1] - cursorAt) < Math.abs(a[1] - cursorAt) ? p : a), x.datapoints[0] || [null, cursorAt]);
      return `${x.target} = ${near[0] === null ? "null" : fmt(near[0])}`;
    });
    $("cursor").textContent = `${iso(Math.round(cursorAt))}  ${at.join("  ")}`;
  };
  svg.addEventListener("mousemove", (e) => {
    const box = svg.getBoundingClientRect();
    showAt(t0 + ((e.clientX - box.left) / box.width * 900 - 60) / (900 - 70) * (t1 - t0));
  });
  $("chart").onkeydown = (e) => {
    const moves = { ArrowLeft: -step, ArrowRight: step, PageUp: -10 * step, PageDown: 10 * step };
    if (e.key in moves) showAt((cursorAt ?? t1) + moves[e.key]);
    else if (e.key === "Home") showAt(t0);
    else if (e.key === "End") showAt(t1);
    else return;
    e.preventDefault();
  };
  $("legend").replaceChildren(...series.map((x, i) => {
    const last = [...x.datapoints].reverse().find((p) => p[0] !== null);
    const swatch = el("span", {});
    swatch.style.background = COLORS[i % COLORS.length];
    return el("li", {}, swatch, `${x.target} (last ${last ? fmt(last[0]) : "none"})`);
  }));
  $("data").replaceChildren(...dataTables(series));
  document.body.dataset.drawn = String(series.length);
}

// The previous /metrics reading, for rates.
let lastReading = null;

// What an operator looks at first: [label, metric names summed, as a rate?].
const SUMMARY = [
  ["StatsD lines/s", ["sluice_metrics_received_total"], true],
  ["… over UDP", ["sluice_lines_udp_total"], true],
  ["… over TCP", ["sluice_lines_tcp_total"], true],
  ["… over unix sockets", ["sluice_lines_unix_total"], true],
  ["carbon points/s received", ["sluice_carbon_points_received_total"], true],
  ["bad lines/s", ["sluice_bad_lines_seen_total", "sluice_carbon_bad_lines_total"], true],
  ["kernel UDP drops", ["sluice_kernel_dropped_datagrams_total"], false],
  ["series dropped by the caps", ["sluice_series_dropped_total"], false],
  ["live counters", ['sluice_series{type="counters"}'], false],
  ["live timers", ['sluice_series{type="timers"}'], false],
  ["live gauges", ['sluice_series{type="gauges"}'], false],
  ["live sets", ['sluice_series{type="sets"}'], false],
  ["whisper queue (points)", ["sluice_whisper_queue_points"], false],
  ["whisper write errors", ["sluice_whisper_errors_total"], false],
  ["carbon destinations up", ["sluice_carbon_up"], false],
  ["carbon buffered (points)", ["sluice_carbon_buffered_points"], false],
  ["carbon dropped (points)", ["sluice_carbon_dropped_points_total"], false],
  ["sink flushes dropped", ["sluice_sink_dropped_flushes_total"], false],
];

function reading(text) {
  const values = new Map();
  text.split("\n").filter((l) => l && !l.startsWith("#")).forEach((l) => {
    const at = l.lastIndexOf(" ");
    values.set(l.slice(0, at), Number(l.slice(at + 1)));
  });
  return { at: Date.now() / 1000, values };
}

// Sum of the metrics named, labels included (`name{...}` counts for `name`).
function total(values, names) {
  let sum = 0, seen = false;
  values.forEach((v, k) => {
    if (names.some((n) => k === n || (!n.includes("{") && k.startsWith(n + "{")))) { sum += v; seen = true; }
  });
  return seen ? sum : null;
}

async function agent() {
  const r = await fetch("/metrics");
  const now = reading(await r.text());
  const cards = SUMMARY.map(([label, names, rate]) => {
    const v = total(now.values, names);
    let shown = v === null ? "—" : fmt(v);
    if (rate && v !== null) {
      const before = lastReading && total(lastReading.values, names);
      shown = before === null || before === undefined ? "…" : fmt((v - before) / Math.max(0.001, now.at - lastReading.at));
    }
    return el("div", { "data-metric": label }, el("dt", {}, label), el("dd", {}, shown));
  });
  $("summary").replaceChildren(...cards);
  const rows = [...now.values].map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v))));
  $("agent").tBodies[0].replaceChildren(...rows);
  lastReading = now;
  document.body.dataset.agent = String(rows.length);
}

function tap(pattern) {
  $("tap-pattern").value = pattern;
  const list = $("tap-lines");
  list.replaceChildren();
  $("tap-status").textContent = `connecting to the tap for ${pattern}`;
  tapSource = new EventSource("/tap?pattern=" + encodeURIComponent(pattern));
  tapSource.onopen = () => { $("tap-status").textContent = `tapping ${pattern}`; };
  tapSource.onmessage = (e) => {
    list.append(el("li", {}, e.data));
    while (list.children.length > TAP_KEEP) list.firstElementChild.remove();
    document.body.dataset.tapped = String(list.children.length);
  };
  tapSource.addEventListener("missed", (e) => {
    $("tap-status").textContent = `tapping ${pattern}: ${e.data} lines missed (reading too slowly)`;
  });
  tapSource.onerror = () => { $("tap-status").textContent = "tap closed"; };
}

// Cubism's view: each series a thin band, values folded into bands of
// rising intensity (positive blue, negative red), so many fit at once.
const BANDS = 3;
function horizonBand(x) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const W = 600, H = 28;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const known = x.datapoints.filter((p) => p[0] !== null);
  const extent = Math.max(1e-12, ...known.map((p) => Math.abs(p[0])));
  const n = x.datapoints.length, w = W / Math.max(1, n);
  x.datapoints.forEach(([v], i) => {
    if (v === null) return;
    const scaled = (Math.abs(v) / extent) * BANDS;
    for (let b = 0; b < BANDS && scaled > b; b++) {
      const h = Math.min(1, scaled - b) * H;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", (i * w).toFixed(2)); r.setAttribute("width", (w + 0.5).toFixed(2));
      r.setAttribute("y", (H - h).toFixed(2)); r.setAttribute("height", h.toFixed(2));
      r.setAttribute("fill", v < 0 ? "#d6604d" : "#4393c3");
      r.setAttribute("fill-opacity", String(0.35 + 0.3 * b));
      svg.append(r);
    }
  });
  return svg;
}

async function horizon() {
  const s = state();
  const target = s.targets[0];
  if (!target) return;
  $("horizon-target").value = target;
  const q = new URLSearchParams({ format: "json", from: s.from, until: s.until, target });
  const r = await fetch("/render?" + q.toString());
  if (!r.ok) { $("horizon").textContent = `${r.status}: ${await r.text()}`; return; }
  const series = await r.json();
  $("horizon").replaceChildren(...series.map((x) => {
    const last = [...x.datapoints].reverse().find((p) => p[0] !== null);
    return el("div", { class: "band", "data-target": x.target }, el("span", { title: x.target }, `${x.target} ${last ? fmt(last[0]) : ""}`), horizonBand(x));
  }));
  document.body.dataset.bands = String(series.length);
}

function route() {
  const s = state();
  clearInterval(refresh);
  if (tapSource) { tapSource.close(); tapSource = null; }
  if (s.view === "tap") {
    $("graph-view").hidden = true;
    $("browse").hidden = true;
    $("agent-view").hidden = true;
    $("tap-view").hidden = false;
    tap(s.pattern);
    return;
  }
  $("tap-view").hidden = true;
  $("horizon-view").hidden = s.view !== "horizon";
  if (s.view === "horizon") {
    $("graph-view").hidden = true;
    $("browse").hidden = true;
    $("agent-view").hidden = true;
    horizon().catch((e) => { $("horizon").textContent = String(e); });
    refresh = setInterval(() => horizon().catch(() => {}), 30000);
    return;
  }
  const graph = s.view !== "agent";
  $("graph-view").hidden = !graph;
  $("browse").hidden = !graph;
  $("agent-view").hidden = graph;
  const run = graph ? draw : agent;
  run().catch((e) => { $("error").textContent = String(e); $("error").hidden = false; });
  refresh = setInterval(() => run().catch(() => {}), graph ? 30000 : 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("target-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const targets = $("target").value.split(/,\s*(?![^()]*\))/).map((t) => t.trim()).filter(Boolean);
    setState({ ...state(), view: "graph", targets, from: $("range").value.trim() || "-1h", until: $("until").value.trim() || "now" });
  });
  $("horizon-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setState({ ...state(), view: "horizon", targets: [$("horizon-target").value.trim()] });
  });
  $("tap-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setState({ ...state(), view: "tap", pattern: $("tap-pattern").value.trim() || "*" });
  });
  $("filter").addEventListener("keydown", (e) => {
    if (e.key === "Enter") showTree($("filter").value.trim() || "*");
  });
  $("tree").addEventListener("keydown", treeKeys);
  $("tag-tree").addEventListener("keydown", treeKeys);
  window.addEventListener("hashchange", route);
  showTree("*");
  showTags();
  route();
});
