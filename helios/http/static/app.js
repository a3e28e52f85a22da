// The Helios dashboard: plain DOM code over the /v1 API of the conductor that served this
// page (no build step, no other host). It polls the listings every second and follows
// the event stream (/v1/events?follow=true, newline-delimited JSON), refreshing at once
// when an event arrives, so tasks and rollouts move without a reload. Every value from
// the API is put in the page as text, never as HTML.
"use strict";

const POLL_MS = 1000;
const MAX_EVENTS = 200;
const state = { job: null, lastIndex: -1, refreshing: false, again: false, stale: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "title") node.title = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(text) {
  const t = String(text ?? "-");
  return el("span", { class: "badge " + t.replace(/\s+/g, "-") }, t);
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(bytes) || 0, i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (n >= 10 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function meter(label, used, total, fmt) {
  const pct = total > 0 ? Math.min(100, Math.max(0, (used / total) * 100)) : 0;
  const fill = el("div", { class: "fill" + (pct > 85 ? " high" : "") });
  fill.style.width = pct.toFixed(1) + "%";
  return el("div", { class: "meter" },
    el("div", {}, `${label} ${fmt(used)} / ${fmt(total)} used`),
    el("div", { class: "bar", role: "meter", "aria-valuenow": pct.toFixed(0),
                "aria-label": label }, fill));
}

// With ACLs on, requests carry an ACL token (kept for this tab only).
function authHeaders() {
  const t = sessionStorage.getItem("heliosToken");
  return t ? { Authorization: "Bearer " + t } : {};
}

async function getJSON(path, retried) {
  const r = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
  if ((r.status === 401 || r.status === 403) && !retried) {
    const t = window.prompt("ACLs are on: paste an ACL token (role reader or more)");
    if (t) { sessionStorage.setItem("heliosToken", t.trim()); return getJSON(path, true); }
  }
  if (r.headers.get("x-helios-stale")) state.stale = true;  // no leader answered
  if (!r.ok) {
    let msg = r.status + "";
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    const err = new Error(msg); err.status = r.status; throw err;
  }
  return r.json();
}

function renderNodes(nodes) {
  const box = document.getElementById("nodes");
  document.getElementById("node-count").textContent =
    `${nodes.filter(n => n.status === "up").length} up of ${nodes.length}`;
  box.replaceChildren(...nodes.map(n => el("div", { class: "node", "data-node": n.name },
    el("div", { class: "title" }, el("span", {}, n.name), badge(n.status)),
    el("div", { class: "addr" }, `${n.address} · ${n.tasks} task${n.tasks === 1 ? "" : "s"}`),
    meter("CPU", n.cpus - n.cpus_free, n.cpus, v => (+v).toFixed(2).replace(/\.?0+$/, "")),
    meter("Memory", n.memory - n.memory_free, n.memory, size),
    el("div", { class: "labels" },
      Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")))));
}

function renderJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  document.getElementById("no-jobs").hidden = jobs.length > 0;
  body.replaceChildren(...jobs.map(j => {
    const row = el("tr", { "data-job": j.name, class: j.name === state.job ? "selected" : "" },
      el("td", {}, j.name), el("td", {}, j.kind), el("td", {}, j.count),
      el("td", {}, j.running), el("td", {}, "v" + j.version), el("td", {}, badge(j.status)));
    row.addEventListener("click", () => select(j.name));
    return row;
  }));
}

function time(t) {
  const d = new Date(Number(t) * 1000);
  return isNaN(d) ? "" : d.toISOString().slice(11, 23);
}

function renderJob(doc, history) {
  document.getElementById("job-section").hidden = false;
  document.getElementById("job-name").textContent = doc.name;
  document.getElementById("job-meta").textContent =
    `${doc.kind}, version ${doc.version}, ${doc.status || ""}`;
  const ro = doc.rollout;
  const box = document.getElementById("rollout");
  box.hidden = !ro;
  if (ro) {
    const text = document.getElementById("rollout-text");
    text.replaceChildren(`rollout v${ro.version}: `, badge(ro.state),
      ` ${ro.updated} of ${ro.total} updated, ${ro.old} old left (parallel ${ro.parallel})`,
      ro.failure ? ` — v${ro.failed_version} failed: ${ro.failure}` : "");
    const pct = ro.total > 0 ? (100 * ro.updated) / ro.total : 0;
    document.getElementById("rollout-bar").style.width = pct.toFixed(1) + "%";
  }
  document.querySelector("#tasks tbody").replaceChildren(...doc.tasks.map(t =>
    el("tr", { "data-task": t.id, "data-state": t.state },
      el("td", {}, t.id), el("td", {}, t.node), el("td", {}, badge(t.state)),
      el("td", {}, t.healthy === null || t.healthy === undefined ? "-" :
        badge(t.healthy ? "yes" : "no")),
      el("td", {}, Object.entries(t.ports || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
      el("td", { title: t.container || "" }, (t.container || "").slice(0, 24)))));
  document.getElementById("pending").textContent = (doc.pending || [])
    .map(p => `slot ${p.index} pending: ${p.reason}`).join("\n");
  document.querySelector("#history tbody").replaceChildren(...history.slice(-60).reverse()
    .map(e => el("tr", {},
      el("td", {}, time(e.time)), el("td", {}, e.task || ""), el("td", {}, e.node || ""),
      el("td", {}, e.state), el("td", { title: e.reason || "" }, e.reason || ""))));
}

function select(name) {
  state.job = name;
  location.hash = "job=" + encodeURIComponent(name);
  refresh();
}

async function refresh() {
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  const conn = document.getElementById("conn");
  state.stale = false;
  try {
    const [leader, nodes, jobs] = await Promise.all(
      [getJSON("/v1/leader"), getJSON("/v1/nodes"), getJSON("/v1/jobs")]);
    document.getElementById("leader").textContent = leader.leader
      ? `leader ${leader.name} (epoch ${leader.epoch})`
      : `standby; leader ${leader.url || "unknown"}`;
    renderNodes(nodes);
    renderJobs(jobs);
    if (state.job) {
      try {
        const [doc, history] = await Promise.all([
          getJSON(`/v1/jobs/${encodeURIComponent(state.job)}`),
          getJSON(`/v1/jobs/${encodeURIComponent(state.job)}/history`)]);
        renderJob(doc, history);
      } catch (e) {
        if (e.status === 404) document.getElementById("job-section").hidden = true;
        else throw e;
      }
    }
    if (state.stale) {
      conn.textContent = "no leader: read from the store"; conn.className = "badge pending";
    } else {
      conn.textContent = "live"; conn.className = "badge live";
    }
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    conn.textContent = "offline: " + e.message; conn.className = "badge offline";
  } finally {
    state.refreshing = false;
    if (state.again) { state.again = false; setTimeout(refresh, 50); }
  }
}

function addEvent(ev) {
  state.lastIndex = Math.max(state.lastIndex, ev.index);
  const list = document.getElementById("events");
  const where = ["job", "task", "node"].filter(k => ev[k]).map(k => `${k}=${ev[k]}`).join(" ");
  list.prepend(el("li", { value: ev.index, "data-topic": ev.topic },
    `${String(ev.time).slice(11, 23)} `, el("span", { class: "topic" }, ev.topic),
    ` ${ev.type} ${where}${ev.detail ? ": " + ev.detail : ""}`));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// Follow the stream; after a cut (a conductor restarting), resume after the last index.
async function follow() {
  for (;;) {
    try {
      // the first time only the newest events; after a cut, all after the last seen
      const from = state.lastIndex < 0 ? `last=${MAX_EVENTS}` : `index=${state.lastIndex}`;
      const r = await fetch(`/v1/events?follow=true&${from}`, { headers: authHeaders() });
      if (!r.ok || !r.body) throw new Error("status " + r.status);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        let any = false;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) { addEvent(JSON.parse(line)); any = true; }
        }
        if (any) refresh();
      }
    } catch (e) { /* reconnect below */ }
    await new Promise(res => setTimeout(res, 1000));
  }
}

const m = /job=([^&]+)/.exec(location.hash);
if (m) state.job = decodeURIComponent(m[1]);
refresh();
setInterval(refresh, POLL_MS);
follow();
