// Leases, members and the member's own metrics (charts drawn on canvas).
import * as api from "./api.js";
import { $, el, notice, clearError, fail, fmtHex, bytesHuman } from "./ui.js";

// ---- leases ----
let leaseRows = [];
export async function leases() {
  let list;
  try { list = (await api.call("/v3/lease/leases", {})).leases || []; } catch (e) { return fail(e, "Listing leases"); }
  const rows = [];
  for (const { ID } of list.slice(0, 200)) {
    try {
      const t = await api.call("/v3/lease/timetolive", { ID, keys: true });
      if (Number(t.TTL) < 0) continue;
      rows.push({ ID, ttl: Number(t.TTL), granted: Number(t.grantedTTL || 0), keys: (t.keys || []).map((k) => api.showKey(api.unb64(k))) });
    } catch (e) { return fail(e, "Reading a lease"); }
  }
  leaseRows = rows; drawLeases();
}
function drawLeases() {
  const tb = $("lease-rows"); tb.replaceChildren();
  for (const r of leaseRows) {
    tb.append(el("tr", {}, el("td", { text: fmtHex(r.ID, 16) }), el("td", { class: "ttl", text: `${Math.max(r.ttl, 0)} s` }),
      el("td", { text: `${r.granted} s` }), el("td", { text: r.keys.join(", ") || "—" }),
      el("td", {}, el("button", { text: "Revoke…", "aria-label": `Revoke lease ${fmtHex(r.ID, 16)}`, onclick: () => revoke(r.ID) }))));
  }
  if (!leaseRows.length) tb.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No leases." })));
}
export function tickLeases() {
  for (const r of leaseRows) r.ttl--;
  if (leaseRows.some((r) => r.ttl < 0)) leases(); else drawLeases();
}
async function revoke(ID) {
  if (!confirm(`Revoke lease ${fmtHex(ID, 16)} and delete its keys?`)) return;
  try { await api.call("/v3/lease/revoke", { ID }); } catch (e) { return fail(e, "Revoking"); }
  notice(`Revoked lease ${fmtHex(ID, 16)}.`); leases();
}
async function grant(ev) {
  ev.preventDefault(); clearError();
  try {
    const r = await api.call("/v3/lease/grant", { TTL: String(Number($("grant-ttl").value) || 60) });
    notice(`Granted lease ${fmtHex(r.ID, 16)} (TTL ${r.TTL} s). Type this ID in a key's Lease box to attach it.`);
  } catch (e) { return fail(e, "Granting"); }
  leases();
}

// ---- members ----
export async function members() {
  let ml, status;
  try {
    ml = (await api.call("/v3/cluster/member/list", { linearizable: true })).members || [];
    status = await api.call("/v3/maintenance/status", {});
  } catch (e) { return fail(e, "Reading the cluster"); }
  let alarms = [], health = "unknown";
  try { alarms = (await api.call("/v3/maintenance/alarm", { action: "GET" })).alarms || []; } catch (e) { alarms = [{ alarm: e.message }]; }
  try { health = JSON.parse(await api.getText("/health")).health === "true" ? "healthy" : "unhealthy"; } catch (e) { health = `unhealthy (${e.message})`; }
  const tb = $("member-rows"); tb.replaceChildren();
  for (const m of ml) {
    const role = m.ID === status.leader ? "leader" : m.isLearner ? "learner" : "follower";
    const tr = el("tr", {}, el("td", { text: m.name || "(unstarted)" }), el("td", { text: fmtHex(m.ID) }),
      el("td", { class: "role", text: role }), el("td", { text: (m.clientURLs || []).join(", ") }),
      el("td", { text: (m.peerURLs || []).join(", ") }));
    tr.dataset.role = role; tr.dataset.id = fmtHex(m.ID);
    tb.append(tr);
  }
  const dl = $("status"); dl.replaceChildren();
  const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
  row("member", fmtHex(status.header?.member_id)); row("leader", fmtHex(status.leader) || "none");
  row("health", health); row("version", status.version || "");
  row("raft term", status.raftTerm || "0"); row("raft index", status.raftIndex || "0");
  row("raft applied index", status.raftAppliedIndex || "0"); row("learner", status.isLearner ? "yes" : "no");
  row("db size", bytesHuman(status.dbSize)); row("db size in use", bytesHuman(status.dbSizeInUse));
  row("alarms", alarms.map((a) => `${a.alarm || "NONE"}${a.memberID ? " on " + fmtHex(a.memberID) : ""}`).join(", ") || "none");
  if (status.errors?.length) row("errors", status.errors.join("; "));
}

// ---- metrics ----
const samples = [];   // { t, handled, fsyncSum, fsyncCount, db }
const KEEP = 120;     // 10 minutes at one sample per 5 s
function parseMetrics(text) {
  const s = { t: Date.now() / 1000, handled: 0, fsyncSum: 0, fsyncCount: 0, db: 0 };
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" "); const name = line.slice(0, sp); const v = Number(line.slice(sp + 1));
    if (name.startsWith("grpc_server_handled_total")) s.handled += v;
    else if (name === "etcd_disk_wal_fsync_duration_seconds_sum") s.fsyncSum = v;
    else if (name === "etcd_disk_wal_fsync_duration_seconds_count") s.fsyncCount = v;
    else if (name === "etcd_mvcc_db_total_size_in_bytes") s.db = v;
  }
  return s;
}
export async function sampleMetrics() {
  try { samples.push(parseMetrics(await api.getText("/metrics"))); }
  catch (e) { if (location.hash === "#/metrics") fail(e, "Reading /metrics"); return; }
  if (samples.length > KEEP) samples.shift();
  if (location.hash === "#/metrics") drawCharts();
}
function series(f) {
  const out = [];
  for (let i = 1; i < samples.length; i++) { const v = f(samples[i - 1], samples[i]); if (v !== null) out.push([samples[i].t, v]); }
  return out;
}
function chart(id, pts, label, unit) {
  const c = $(id); const g = c.getContext("2d"); const W = c.width, H = c.height;
  c.dataset.points = String(pts.length);
  g.clearRect(0, 0, W, H); g.strokeStyle = "#d6dae0"; g.strokeRect(0.5, 0.5, W - 1, H - 1);
  $(label).textContent = pts.length ? `now ${pts[pts.length - 1][1].toFixed(2)}${unit}` : "(collecting…)";
  if (pts.length < 2) return;
  const max = Math.max(...pts.map((p) => p[1]), 1e-9); const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  g.fillStyle = "#5b6470"; g.font = "10px sans-serif"; g.fillText(`max ${max.toFixed(2)}`, 4, 11);
  g.strokeStyle = "#0b5cad"; g.lineWidth = 1.5; g.beginPath();
  pts.forEach(([t, v], i) => { const x = 2 + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 4), y = H - 4 - (v / max) * (H - 18); i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke();
}
export function drawCharts() {
  chart("chart-rps", series((a, b) => Math.max(b.handled - a.handled, 0) / Math.max(b.t - a.t, 1e-3)), "v-rps", "");
  chart("chart-fsync", series((a, b) => (b.fsyncCount > a.fsyncCount ? ((b.fsyncSum - a.fsyncSum) / (b.fsyncCount - a.fsyncCount)) * 1000 : 0)), "v-fsync", " ms");
  chart("chart-db", samples.map((x) => [x.t, x.db / 1048576]), "v-db", " MiB");   // a level, not a rate
}

export function init() { $("grant-form").addEventListener("submit", grant); }
