// The operator page: live results over server-sent events, the rest from /page/state every 2 s.
// Plain DOM code: no framework, no build step, nothing fetched from outside this Runner.
"use strict";

const COLORS = { defect_rects: "#e74c3c", position_rects: "#2ecc71", calibration_rects: "#3498db" };
const SVG = "http://www.w3.org/2000/svg";
const latest = new Map(); // pid -> newest event
const shownKeys = {}; // table id -> the data it shows (re-rendered only on change: inputs keep text)
const recent = []; // newest first
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("procvision-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("procvision-token", tokenInput.value));

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(n) { return typeof n === "number" ? n.toFixed(1) : "–"; }
function pkgText(p) { return p ? `${p.name} ${p.version}` : "–"; }
function timeText(ms) { return new Date(ms).toLocaleTimeString(); }

function overlay(event) {
  // Boxes in the frame's own pixel coordinates; the SVG scales with the thumbnail.
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${event.width} ${event.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const stroke = Math.max(2, Math.round(event.width / 300));
  for (const [key, rects] of Object.entries(event.rects || {})) {
    for (const r of rects) {
      const box = document.createElementNS(SVG, "rect");
      box.setAttribute("x", r.x); box.setAttribute("y", r.y);
      box.setAttribute("width", r.width); box.setAttribute("height", r.height);
      box.setAttribute("fill", "none"); box.setAttribute("stroke", COLORS[key] || "#fff");
      box.setAttribute("stroke-width", stroke);
      box.setAttribute("class", `box ${key}`);
      svg.append(box);
      const caption = [r.label, typeof r.score === "number" ? r.score.toFixed(2) : null].filter((x) => x !== undefined && x !== null).join(" ");
      if (caption) {
        const text = document.createElementNS(SVG, "text");
        text.setAttribute("x", r.x); text.setAttribute("y", Math.max(event.height / 25, r.y - stroke));
        text.setAttribute("fill", COLORS[key] || "#fff");
        text.setAttribute("font-size", Math.max(12, Math.round(event.height / 22)));
        text.setAttribute("font-weight", "700");
        text.textContent = caption;
        svg.append(text);
      }
    }
  }
  return svg;
}

function card(event) {
  const frame = el("div", { class: "frame" });
  if (event.thumb_width) {
    frame.append(el("img", { src: `/page/live/${event.seq}/thumb.jpg`, alt: `frame of ${event.pid}` }));
    if (event.width) frame.append(overlay(event));
  } else {
    frame.append(el("div", { class: "noimage" }, "no image on this page (client buffer or nobody watching)"));
  }
  const reason = event.verdict === "NG" ? event.ng_reason : event.verdict === "ERROR" ? `${event.error_code || ""} ${event.message}` : "";
  const t = event.timings || {};
  return el("div", { class: "card live-card", "data-pid": event.pid, "data-verdict": event.verdict, "data-seq": String(event.seq) },
    frame,
    el("div", { class: `banner ${event.verdict}` }, `${event.verdict}${reason ? " · " + reason : ""}`),
    el("div", { class: "meta" },
      el("div", {}, `pid ${event.pid} · step ${event.step_index} · `, el("span", { class: "package" }, pkgText(event.package))),
      el("div", {}, `queue ${fmt(t.queue_ms)} · transfer ${fmt(t.transfer_ms)} · algorithm ${fmt(t.algorithm_ms)} · total ${fmt(t.total_ms)} ms`),
      el("div", {}, `${timeText(event.time_ms)}${event.archive_id ? " · archived" : ""}`)));
}

function renderLive() {
  const box = document.getElementById("live");
  box.replaceChildren(...[...latest.keys()].sort().map((pid) => card(latest.get(pid))));
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...recent.slice(0, 30).map((e) => {
    const t = e.timings || {};
    const why = e.verdict === "NG" ? e.ng_reason : e.verdict === "ERROR" ? `${e.error_code || ""} ${e.message}` : "";
    return el("tr", { "data-seq": String(e.seq) }, el("td", {}, timeText(e.time_ms)), el("td", {}, e.pid), el("td", {}, e.step_index),
      el("td", {}, pkgText(e.package)), el("td", { class: `verdict-${e.verdict}` }, e.verdict), el("td", {}, why || ""),
      el("td", {}, fmt(t.queue_ms)), el("td", {}, fmt(t.transfer_ms)), el("td", {}, fmt(t.algorithm_ms)), el("td", {}, fmt(t.total_ms)));
  }));
}

function onResult(event) {
  latest.set(event.pid, event);
  recent.unshift(event);
  recent.length = Math.min(recent.length, 100);
  renderLive();
  if (event.archive_id) loadArchive();
}

function connect() {
  const source = new EventSource("/page/events");
  source.addEventListener("result", (m) => onResult(JSON.parse(m.data)));
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${data.error_code || response.status}: ${data.message || response.statusText}`);
  return data;
}

async function act(label, method, path, body) {
  if (!window.confirm(`${label}?`)) return;
  const out = document.getElementById("action-result");
  out.textContent = `${label}: running…`;
  try {
    await api(method, path, body);
    out.textContent = `${label}: done`;
    shownKeys.installed = null; // clear the pid inputs
  } catch (err) {
    out.textContent = `${label}: ${err.message}`;
  }
  refresh();
}

function changed(id, data) {
  const key = JSON.stringify(data);
  if (shownKeys[id] === key) return false;
  shownKeys[id] = key;
  return true;
}

function pidsOf(input) { return input.value.split(",").map((s) => s.trim()).filter(Boolean); }

function renderState(s) {
  const ready = document.getElementById("ready");
  ready.textContent = s.ready.ready ? "ready" : `not ready: ${s.ready.problems.join("; ")}`;
  ready.className = `badge ${s.ready.ready ? "ready" : "not-ready"}`;

  document.querySelector("#counts tbody").replaceChildren(...s.counts.rows.map((r) => el("tr", { "data-pid": r.pid, "data-version": r.version },
    el("td", {}, r.pid), el("td", {}, `${r.name} ${r.version}`), el("td", {}, r.ok), el("td", { class: "ng" }, r.ng), el("td", {}, r.error),
    el("td", {}, r.ng_rate === null ? "–" : `${(100 * r.ng_rate).toFixed(1)} %`), el("td", {}, r.ok_hour), el("td", {}, r.ng_hour), el("td", {}, r.error_hour),
    el("td", {}, r.ng_rate_hour === null ? "–" : `${(100 * r.ng_rate_hour).toFixed(1)} %`))));
  const codes = Object.entries(s.counts.errors_by_code);
  document.getElementById("errors-by-code").textContent = codes.length ? codes.map(([c, n]) => `${c}: ${n}`).join(", ") : "none";

  if (changed("routes", s.routes)) document.querySelector("#routes tbody").replaceChildren(...Object.entries(s.routes).sort().map(([pid, k]) => el("tr", { "data-pid": pid },
    el("td", {}, pid), el("td", { class: "package" }, `${k.name} ${k.version}`),
    el("td", {}, el("button", { "data-action": "rollback", onclick: () => act(`roll back ${pid}`, "POST", "/algorithms/rollback", { pid }) }, "rollback"),
      el("button", { "data-action": "deactivate", onclick: () => act(`deactivate ${pid}`, "POST", "/algorithms/deactivate", { pid }) }, "deactivate")))));

  if (changed("installed", s.installed)) document.querySelector("#installed tbody").replaceChildren(...s.installed.map((p) => {
    const input = el("input", { class: "pids", placeholder: "p001,p002", size: 14 });
    const key = `${p.name} ${p.version}`;
    return el("tr", { "data-name": p.name || "", "data-version": p.version || "" },
      el("td", {}, p.name), el("td", {}, p.version), el("td", {}, p.state || ""), el("td", {}, (p.pids || p.supported_pids || []).join(", ")),
      el("td", {}, [p.sdk, p.transport].filter(Boolean).join(" · ")),
      el("td", {}, input,
        el("button", { "data-action": "activate", onclick: () => act(`activate ${key} for ${input.value}`, "POST", "/algorithms/activate", { name: p.name, version: p.version, pids: pidsOf(input) }) }, "activate"),
        el("button", { "data-action": "switch", onclick: () => act(`switch ${input.value} to ${key}`, "POST", "/algorithms/switch", { name: p.name, version: p.version, pids: pidsOf(input) }) }, "switch")));
  }));

  document.querySelector("#workers tbody").replaceChildren(...s.workers.map((w) => el("tr", {},
    el("td", {}, `${w.package} ${w.version}`), el("td", {}, w.id), el("td", {}, w.pid), el("td", {}, w.state),
    el("td", {}, w.rss_bytes ? (w.rss_bytes / 1048576).toFixed(0) : "–"), el("td", {}, w.calls), el("td", {}, w.uptime_s))));
  document.getElementById("worker-restarts").textContent = `worker restarts since start (all packages): ${s.restarts || 0}`;

  document.getElementById("archive-usage").textContent = s.archive ? `${s.archive.count} frames, ${(s.archive.bytes / 1048576).toFixed(1)} MB kept` : "archive off";

  document.getElementById("sessions").replaceChildren(...s.sessions.map((x) => el("li", {},
    el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showLogs(x.id); } }, x.id), ` · ${x.packages.join(", ")} · ${x.log_lines} log lines · idle ${x.idle_s.toFixed(0)} s`)));

  document.querySelector("#audit tbody").replaceChildren(...s.audit.map((a) => el("tr", {},
    el("td", {}, a.time), el("td", {}, a.action), el("td", {}, [a.package, a.version].filter(Boolean).join(" ")), el("td", {}, (a.pids || []).join(", ")),
    el("td", {}, `${a.outcome}${a.error_code ? " " + a.error_code : ""}${a.message ? ": " + a.message : ""}`))));
}

async function showLogs(id) {
  const box = document.getElementById("session-logs");
  try {
    const logs = await api("GET", `/sessions/${encodeURIComponent(id)}/logs`);
    const lines = Array.isArray(logs) ? logs : logs.logs || [];
    box.textContent = lines.map((l) => JSON.stringify(l)).join("\n") || "(no log lines)";
  } catch (err) {
    box.textContent = err.message;
  }
}

async function loadArchive() {
  try {
    const entries = await api("GET", "/results?limit=24");
    document.getElementById("archive").replaceChildren(...entries.map((e) => el("li", { "data-id": e.id, "data-verdict": e.verdict },
      el("a", { href: `/results/${e.id}/image`, target: "_blank", class: "frame" },
        el("img", { src: `/results/${e.id}/image?thumb=true`, alt: e.id }), e.width ? overlay(e) : null),
      el("div", { class: `verdict-${e.verdict}` }, `${e.verdict} · ${e.ng_reason || e.message || ""}`),
      el("div", {}, `${timeText(e.time_ms)} · pid ${e.pid} · step ${e.step_index} · ${pkgText(e.package)}`))));
  } catch (err) {
    document.getElementById("archive-usage").textContent = err.message;
  }
}

async function refresh() {
  try {
    renderState(await api("GET", "/page/state"));
  } catch (err) {
    document.getElementById("ready").textContent = `unreachable: ${err.message}`;
  }
}

connect();
refresh();
loadArchive();
setInterval(refresh, 2000);
