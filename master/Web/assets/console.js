// FeitianK8s web console: reads the JSON documents of the CLI's --json every 2 s and draws them. Read-only.
// Backups (api/backups) are listed by the master from its --backup-target, cached there for 10 s.
"use strict";

const REFRESH_MS = 2000;
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
let refreshes = 0;

function bytes(n) {
  let value = Number(n) || 0, unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit++; }
  const text = unit === 0 || value >= 10 ? Math.round(value).toString() : value.toFixed(1);
  return `${text} ${UNITS[unit]}`;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function bar(used, capacity) {
  const percent = capacity > 0 ? Math.min(100, (100 * used) / capacity) : 0;
  const fill = el("span");
  fill.style.width = `${percent.toFixed(1)}%`;
  return el("div", { class: "bar", title: `${percent.toFixed(1)}% used` }, fill);
}

function serverState(server) {
  return server.dead ? "dead" : server.alive ? "up" : "down";
}

function renderMasters(masters) {
  const body = document.querySelector("#masters tbody");
  body.replaceChildren(...masters.map(m => el("tr", { class: "master", "data-address": m.address, "data-role": m.role },
    el("td", {}, m.address), el("td", { class: `role ${m.role}` }, m.role), el("td", {}, m.term),
    el("td", {}, m.commitIndex), el("td", {}, m.lag === null ? "-" : m.lag))));
}

function renderRacks(servers) {
  const racks = new Map();
  for (const server of servers) {
    if (!racks.has(server.rack)) racks.set(server.rack, new Map());
    const nodes = racks.get(server.rack);
    if (!nodes.has(server.node)) nodes.set(server.node, []);
    nodes.get(server.node).push(server);
  }
  const rackNames = [...racks.keys()].sort();
  document.getElementById("racks").replaceChildren(...rackNames.map(rack => {
    const nodes = racks.get(rack);
    const nodeNames = [...nodes.keys()].sort();
    return el("div", { class: "rack", "data-rack": rack }, el("h3", {}, `rack ${rack}`),
      ...nodeNames.map(node => el("div", { class: "node", "data-node": node }, el("h4", {}, `node ${node}`),
        ...nodes.get(node).map(s => {
          const state = serverState(s);
          const scrub = s.scrub === null ? "scrub off"
            : `scrubbed ${bytes(s.scrub.bytesVerified)}, ${s.scrub.badFound} bad` + (s.scrub.lastCompleted ? `, last pass ${new Date(s.scrub.lastCompleted).toLocaleString()}` : "");
          return el("div", { class: "chunkserver", "data-id": s.id, "data-state": state },
            el("div", {}, el("span", { class: `state ${state}` }, state), " ", el("span", { class: "id", title: s.address }, s.id)),
            bar(s.usedBytes, s.capacityBytes),
            el("div", { class: "usage" }, `${bytes(s.usedBytes)} of ${bytes(s.capacityBytes)} used, ${s.chunks} chunks`),
            el("div", { class: "muted" }, scrub));
        }))));
  }));
}

function renderRepair(status) {
  const r = status.rebuild;
  document.getElementById("rebuild").replaceChildren(
    el("div", { id: "chunk-health", "data-degraded": status.degradedChunks, "data-under-replicated": status.underReplicatedChunks },
      `degraded chunks: ${status.degradedChunks}, under-replicated chunks: ${status.underReplicatedChunks}, bad replicas: ${status.badReplicas}`),
    el("div", { id: "rebuild-progress", "data-copies-active": r.copiesActive, "data-bytes-remaining": r.bytesRemaining },
      `rebuild: ${bytes(r.bytesRemaining)} left at ${bytes(r.bytesPerSecond)}/s, ${r.copiesActive} copies running`));
  const scrubbed = status.chunkServers.filter(s => s.scrub !== null);
  const verified = scrubbed.reduce((sum, s) => sum + s.scrub.bytesVerified, 0);
  const bad = scrubbed.reduce((sum, s) => sum + s.scrub.badFound, 0);
  document.getElementById("scrub").replaceChildren(el("div", { id: "scrub-progress", "data-bad-found": bad },
    scrubbed.length === 0 ? "scrub: off" : `scrub: ${bytes(verified)} verified on ${scrubbed.length} chunk servers, ${bad} corrupt blocks found`));
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

// Per volume: how many backups, the latest one's time and the bytes all of them uploaded.
function backupSummary(backups) {
  const perVolume = new Map();
  for (const b of backups) {
    const s = perVolume.get(b.volume) || { count: 0, latest: null, uploadedBytes: 0 };
    s.count++;
    s.uploadedBytes += b.uploadedBytes;
    if (s.latest === null || b.createdAt > s.latest) s.latest = b.createdAt;
    perVolume.set(b.volume, s);
  }
  return perVolume;
}

function renderBackups(listing) {
  const target = document.getElementById("backup-target");
  const body = document.querySelector("#backups tbody");
  if (listing.error) {
    target.dataset.configured = "error";
    target.className = "error-text";
    target.textContent = listing.error;
    body.replaceChildren();
    return;
  }
  target.dataset.configured = String(listing.configured);
  target.className = "muted";
  target.textContent = listing.configured
    ? `${listing.backups.length} backup${listing.backups.length === 1 ? "" : "s"} in ${listing.target}` + (listing.unreadable.length > 0 ? `; ${listing.unreadable.length} unreadable manifests` : "")
    : "no backup target configured (start the master or `feitian up` with --backup-target and --backup-endpoint)";
  if (listing.backups.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, listing.configured ? "no backup yet" : "-")));
    return;
  }
  const newestFirst = [...listing.backups].sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  body.replaceChildren(...newestFirst.map(b => el("tr", { class: "backup", "data-id": b.id, "data-volume": b.volume },
    el("td", { class: "id" }, b.id), el("td", {}, b.volume), el("td", {}, b.snapshot), el("td", {}, bytes(b.sizeBytes)),
    el("td", {}, bytes(b.uploadedBytes)), el("td", {}, when(b.createdAt)))));
}

function renderVolumes(volumes, snapshots, backups) {
  const perVolume = new Map();
  for (const snapshot of snapshots) perVolume.set(snapshot.volume, (perVolume.get(snapshot.volume) || []).concat(snapshot.name));
  const backed = backupSummary(backups);
  const body = document.querySelector("#volumes tbody");
  if (volumes.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no volume yet")));
    return;
  }
  body.replaceChildren(...volumes.map(v => {
    const names = perVolume.get(v.name) || [];
    const health = v.health.state;
    return el("tr", { class: "volume", "data-name": v.name, "data-health": health },
      el("td", {}, v.name), el("td", {}, bytes(v.sizeBytes)), el("td", {}, v.replicas),
      el("td", { class: `health ${health}`, title: `${v.health.chunks} chunks, ${v.health.degradedChunks} degraded, ${v.health.unavailableChunks} unavailable` },
        health + (v.health.degradedChunks > 0 ? ` (${v.health.degradedChunks}/${v.health.chunks} chunks)` : "")),
      el("td", {}, v.leaseHolder || "-"),
      el("td", { class: "snapshots", "data-count": names.length }, names.length === 0 ? "-" : names.join(", ")),
      backupCell(backed.get(v.name)));
  }));
}

function backupCell(summary) {
  if (!summary) return el("td", { class: "backups", "data-count": 0 }, "-");
  return el("td", { class: "backups", "data-count": summary.count, title: `latest ${summary.latest}` },
    `${summary.count}, latest ${when(summary.latest)}, ${bytes(summary.uploadedBytes)} uploaded`);
}

async function load(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// The backup list comes from an object store that may fail (502 with the reason): the rest of the page still draws.
async function loadBackups() {
  try {
    const response = await fetch("api/backups", { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) return { error: body.error || `api/backups: HTTP ${response.status}`, backups: [] };
    return body;
  } catch (e) {
    return { error: `api/backups: ${e.message}`, backups: [] };
  }
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [status, volumes, snapshots, backups] = await Promise.all([
      load("api/status"), load("api/volumes"),
      load("api/snapshots").catch(() => ({ snapshots: [] })),
      loadBackups(),
    ]);
    renderMasters(status.masters);
    renderRepair(status);
    renderRacks(status.chunkServers);
    renderVolumes(volumes.volumes, snapshots.snapshots, backups.backups);
    renderBackups(backups);
    const badge = document.getElementById("health");
    badge.dataset.healthy = String(status.healthy);
    badge.textContent = status.healthy ? "healthy" : "degraded";
    refreshes++;
    const updated = document.getElementById("updated");
    updated.dataset.refreshes = String(refreshes);
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    error.hidden = true;
  } catch (e) {
    error.hidden = false;
    error.textContent = `cannot refresh: ${e.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
