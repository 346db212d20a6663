// The JSON gateway (etcd's /v3/ routes): bytes travel as base64, int64 as strings.
// Works the same against kvcore and real etcd.

const enc = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

export class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
  get authNeeded() { return /user name is empty|invalid auth token|token.*expired|authentication failed/i.test(this.message); }
  get expired() { return /invalid auth token|token.*expired/i.test(this.message); }
}

export const bytes = (s) => (s instanceof Uint8Array ? s : enc.encode(s));
export function b64(u8) {
  u8 = bytes(u8); let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}
export function unb64(s) {
  const bin = atob(s || ""); const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}
// Text if the bytes are UTF-8, else null (the caller shows hex or escapes).
export function utf8(u8) { try { return strict.decode(u8); } catch { return null; } }
// A key for display: UTF-8 as is, other bytes as \xNN (and "\" as "\\"), so it reads back.
export function showKey(u8) {
  const t = utf8(u8);
  if (t !== null) return t.replaceAll("\\", "\\\\");
  let out = "";
  for (const b of u8) out += b === 0x5c ? "\\\\" : (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "\\x" + b.toString(16).padStart(2, "0"));
  return out;
}
// The inverse of showKey for typed keys: \xNN and \\ escapes.
export function parseKey(s) {
  const out = []; const u = enc.encode(s);
  for (let i = 0; i < u.length; i++) {
    if (u[i] === 0x5c && u[i + 1] === 0x5c) { out.push(0x5c); i++; }
    else if (u[i] === 0x5c && u[i + 1] === 0x78 && /^[0-9a-fA-F]{2}$/.test(String.fromCharCode(u[i + 2], u[i + 3]))) {
      out.push(parseInt(String.fromCharCode(u[i + 2], u[i + 3]), 16)); i += 3;
    } else out.push(u[i]);
  }
  return new Uint8Array(out);
}
export function hex(u8) { return Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join(" ").replace(/((?:\S+ ){16})/g, "$1\n"); }
export function unhex(s) {
  const t = s.replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(t)) throw new Error("Invalid hex: use pairs of 0-9a-f digits");
  return new Uint8Array(t.match(/../g)?.map((h) => parseInt(h, 16)) || []);
}
// The first key after every key with this prefix (etcd's range_end for a prefix).
export function prefixEnd(u8) {
  const e = Uint8Array.from(u8);
  for (let i = e.length - 1; i >= 0; i--) if (e[i] < 0xff) { e[i]++; return e.subarray(0, i + 1); }
  return new Uint8Array([0]);
}
export function concat(...parts) {
  const all = parts.map(bytes); const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let o = 0; for (const p of all) { out.set(p, o); o += p.length; } return out;
}
export const after = (u8) => concat(u8, new Uint8Array([0]));

// The auth token lives in sessionStorage: one per tab, gone when the tab closes.
export const session = {
  get token() { return sessionStorage.getItem("kvcore-token") || ""; },
  set(t, user) { sessionStorage.setItem("kvcore-token", t); sessionStorage.setItem("kvcore-user", user || ""); },
  clear() { sessionStorage.removeItem("kvcore-token"); sessionStorage.removeItem("kvcore-user"); },
  get user() { return sessionStorage.getItem("kvcore-user") || ""; },
};

function headers() {
  const h = { "Content-Type": "application/json" };
  if (session.token) h.Authorization = session.token;
  return h;
}

async function failure(resp) {
  const text = await resp.text();
  const plain = { 413: "request is too large", 401: "unauthorized", 404: "not found on this endpoint" }[resp.status];
  let msg = text.trim() || `${plain ? plain + " " : ""}(HTTP ${resp.status})`, code;
  try { const j = JSON.parse(text); msg = j.message || j.error || msg; code = j.code; } catch { /* plain text */ }
  return new ApiError(msg, code, resp.status);
}

export async function call(path, body = {}) {
  let resp;
  try { resp = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) }); }
  catch (e) { throw new ApiError(`cannot reach the server (${e.message})`, 14, 0); }
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

export async function getText(path) {
  const resp = await fetch(path, { headers: session.token ? { Authorization: session.token } : {} });
  if (!resp.ok) throw await failure(resp);
  return resp.text();
}

// One KeyValue from the gateway's JSON, with bytes decoded and numbers as Numbers
// (revisions fit in 2^53), lease kept as a string (IDs use all 64 bits).
export function kv(j) {
  return { key: unb64(j.key), value: unb64(j.value), create: Number(j.create_revision || 0),
    mod: Number(j.mod_revision || 0), version: Number(j.version || 0), lease: j.lease || "0" };
}

export async function range(key, end, opts = {}) {
  const body = { key: b64(key), ...opts };
  if (end) body.range_end = b64(end);
  const r = await call("/v3/kv/range", body);
  return { kvs: (r.kvs || []).map(kv), more: !!r.more, count: Number(r.count || 0), rev: Number(r.header?.revision || 0) };
}

// A streaming watch: calls onEvents(events, revision) for each batch; resolves when the
// stream ends, rejects if it cannot start (an endpoint without /v3/watch, e.g. 404).
export async function watch(key, end, startRev, onEvents, signal) {
  const body = { create_request: { key: b64(key), range_end: b64(end), start_revision: String(startRev || 0) } };
  const resp = await fetch("/v3/watch", { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!resp.ok) throw await failure(resp);
  const reader = resp.body.getReader(); const dec = new TextDecoder(); let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim(); buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      if (msg.error) throw new ApiError(msg.error.message || "watch failed", msg.error.code, 200);
      const r = msg.result || {};
      if (r.canceled) throw new ApiError(r.cancel_reason || "watch canceled", 0, 200);
      if (r.events) onEvents(r.events.map((e) => ({ type: e.type || "PUT", kv: kv(e.kv) })), Number(r.header?.revision || 0));
    }
  }
}
