// The keys view: a tree (by a separator) or a flat list with prefix search, paged with
// range limit + keys_only (never the whole keyspace), and the open key's editor.
import * as api from "./api.js";
import { $, el, showError, clearError, notice, clearNotice, fail, fmtHex, fromHex, bytesHuman } from "./ui.js";
import { lineDiff } from "./diff.js";

const PAGE = 100;          // entries shown per page
const BATCH = 500;         // keys read per range call while grouping a folder
const ALL = new Uint8Array([0]);

const st = {
  mode: "tree", dir: new Uint8Array(0), prefix: new Uint8Array(0), cursor: null, shown: [], signature: "",
  open: null,      // { key, kv (null: not found / new), isNew, dirty, format }
  leaseTimer: null,
  seq: 0,         // the latest listing request
  moreBusy: false, liveAfter: false,   // a "More" being read; a live refresh waiting for it
  count: null,    // the folder's (or prefix's) key count, from its first page
  openSeq: 0, opening: null,
  format: "text",  // the view the user chose; a value that does not fit falls back for itself only
};

const startsWith = (a, p) => a.length >= p.length && p.every((b, i) => a[i] === b);
function indexOf(a, needle) {
  outer: for (let i = 0; i + needle.length <= a.length; i++) {
    for (let j = 0; j < needle.length; j++) if (a[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
function common(a, b) { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return i; }
const sepBytes = () => api.bytes($("sep").value || "/");
const end = (p) => (p.length ? api.prefixEnd(p) : ALL);
const start = (p) => (p.length ? p : ALL);

// A folder's children in the window [lo, hi) of its keys, in order, at most `want`:
// keys directly in it and sub-folders. A sub-folder costs one read: after its first key
// the walk jumps to the end of its prefix. Every range also counts the keys up to its
// range_end, so the next keys are looked for in a narrow window first ([cur, end of a
// shorter prefix of cur)); an empty window moves on to the next block at the same
// level (d001 after d000), then one byte wider: a read counts a few sub-folders' keys,
// not the folder's. next: where the walk stopped (null: the window is done).
async function walkWindow(prefix, lo, hi, want, abort, first = null) {
  const sep = sepBytes(); const out = [];
  let cur = lo; let limit = 16; let cut = null;
  for (let calls = 0; calls < 1000 && out.length < want && !abort.stop; calls++) {
    let r = first, whole = true;
    if (r) first = null;
    else {
      for (let empty = 0, c = Math.min(cut ?? cur.length - 1, cur.length - 1); ;) {
        cut = c;
        let e = c <= prefix.length ? hi : api.prefixEnd(cur.subarray(0, c));
        whole = isEnd(e) || compare(e, hi) >= 0;
        if (whole) e = hi;
        r = await api.range(cur, e, { limit: String(limit), keys_only: true });
        if (r.kvs.length || whole || abort.stop) break;
        cur = e; empty++;
        c = Math.min(empty % 2 ? cut : cut - 1, cur.length);
      }
    }
    let lastDir = null; const before = out.length;
    for (const { key } of r.kvs) {
      if (lastDir && startsWith(key, lastDir)) continue;
      if (out.length >= want) return { out, next: cur };
      const rest = key.subarray(prefix.length); const i = indexOf(rest, sep);
      if (i < 0) { out.push({ dir: false, key, label: api.showKey(rest) }); cur = api.after(key); lastDir = null; }
      else {
        lastDir = api.concat(prefix, rest.subarray(0, i + sep.length));
        out.push({ dir: true, key: lastDir, label: api.showKey(rest.subarray(0, i + sep.length)) });
        cur = api.prefixEnd(lastDir);
      }
    }
    if (whole && !r.more) return { out, next: null };
    limit = out.length - before >= limit / 2 ? BATCH : 16;
  }
  return { out, next: cur };
}

const compare = (a, b) => {
  for (let i = 0; i < a.length && i < b.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
};
const isEnd = (e) => e.length === 1 && e[0] === 0;   // prefixEnd of 0xff...: no end
const afterChild = (c) => (c.dir ? api.prefixEnd(c.key) : api.after(c.key));
const WINDOWS = 12;   // blocks walked side by side once two children show the naming
const WALKERS = 4;    // reads in flight (a browser opens ~6 connections per host)

// One page of a folder. The first read also counts the folder (once). Once two
// children are known, the rest is cut into blocks by the byte before the one where
// they differ (d0000/, d0001/ -> blocks d000, d001, ..., then the remainder) and the
// blocks are walked side by side: a page of 100 sub-folders costs ~100 reads, but in
// ~100 / WALKERS round trips. Children come out in key order all the same.
async function folderPage(prefix, cursor, progress) {
  const full = end(prefix); const out = []; let count = null; const abort = { stop: false };
  let cur = cursor || start(prefix); let first = null;
  if (!cursor) {
    first = await api.range(cur, full, { limit: "16", keys_only: true });
    count = first.count;
  }
  while (out.length < Math.min(2, PAGE)) {
    const w = await walkWindow(prefix, cur, full, Math.min(2, PAGE) - out.length, abort, first);
    first = null; out.push(...w.out);
    if (w.next === null) return { out, next: null, count };
    cur = w.next;
  }
  if (out.length >= PAGE) return { out, next: cur, count };
  if (progress) progress(out, count);
  // The blocks: [cur, E0), [E0, E1), ... [E_k, full).
  const s = Math.max(common(out[out.length - 2].key, out[out.length - 1].key) - 1, prefix.length);
  const bounds = [cur];
  if (cur.length > s) {
    for (let e = api.prefixEnd(cur.subarray(0, s + 1)); bounds.length < WINDOWS && !isEnd(e) && compare(e, full) < 0; e = api.prefixEnd(e)) bounds.push(e);
  }
  const want = PAGE - out.length; const results = new Array(bounds.length); let taken = 0;
  const settle = () => {   // the longest run of finished blocks, in order
    let n = 0;
    for (let i = 0; i < results.length && results[i]; i++) {
      n += results[i].out.length;
      if (n >= want || results[i].next !== null) { abort.stop = true; return true; }
    }
    return false;
  };
  let at = 0;
  const walker = async () => {
    while (at < bounds.length && !abort.stop) {
      const i = at++;
      const hi = i + 1 < bounds.length ? bounds[i + 1] : full;
      results[i] = await walkWindow(prefix, bounds[i], hi, want, abort);
      if (!settle() && progress) progress(out.concat(...results.slice(0, results.findIndex((x) => !x) >>> 0).map((x) => x.out)), count);
    }
  };
  await Promise.all(Array.from({ length: WALKERS }, walker));
  for (let i = 0; i < results.length; i++) {
    const w = results[i];
    if (!w) return { out, next: taken >= want ? afterChild(out[out.length - 1]) : bounds[i], count };
    for (const c of w.out) {
      if (taken >= want) return { out, next: afterChild(out[out.length - 1]), count };
      out.push(c); taken++;
    }
    if (w.next !== null) return { out, next: w.next, count };
  }
  return { out, next: null, count };
}

async function listPage(prefix, cursor) {
  const r = await api.range(cursor || start(prefix), end(prefix), { limit: String(PAGE), keys_only: true });
  const out = r.kvs.map(({ key }) => ({ dir: false, key, label: api.showKey(key) }));
  return { out, next: r.more && out.length ? api.after(out[out.length - 1].key) : null, count: cursor ? null : r.count };
}

// Reads the first page (or the next one with more=true); quiet: no re-render if unchanged.
// A live refresh (a change seen, the poller) re-reads as many pages as are shown, and
// waits for a "More" being read instead of dropping it.
export async function refresh(more = false) {
  const prefix = st.mode === "tree" ? st.dir : st.prefix;
  const fresh = !more && st.signature === "";
  if (!more && !fresh && st.moreBusy) { st.liveAfter = true; return; }
  const read = st.mode === "tree" ? folderPage : listPage;
  let page;
  // A fresh folder paints as its children arrive; a live refresh only when done.
  const seq = ++st.seq;   // a later listing wins: an older answer arriving late is dropped
  // (no More while painting: the cursor is the finished page's)
  const progress = fresh ? (part, count) => seq === st.seq && render(part, count, false) : null;
  if (more) st.moreBusy = true;
  try {
    page = await read(prefix, more ? st.cursor : null, progress);
    for (let n = page.out.length; !more && !fresh && page.next && n < st.shown.length; n = page.out.length) {
      const next = await read(prefix, page.next, null);
      page = { out: page.out.concat(next.out), next: next.next, count: page.count };
    }
  } catch (e) {
    if (seq !== st.seq) return;
    if (/permission denied/i.test(e.message)) { render([], 0, false, "You cannot read keys here."); st.signature = ""; }
    return fail(e, "Listing keys");
  } finally {
    if (more) {
      st.moreBusy = false;
      if (st.liveAfter) { st.liveAfter = false; setTimeout(() => refresh(), 0); }
    }
  }
  if (seq !== st.seq) return;
  st.cursor = page.next;
  const shown = more ? st.shown.concat(page.out) : page.out;
  const count = more ? st.count : page.count;
  const sig = shown.map((c) => (c.dir ? "d" : "k") + api.b64(c.key)).join(",") + "|" + count + "|" + !!page.next;
  if (!more && sig === st.signature) return;
  st.signature = sig; st.shown = shown; st.count = count;
  render(shown, count, !!page.next);
}

function render(items, count, hasMore, empty) {
  const ul = $("entries"); ul.replaceChildren();
  for (const c of items) {
    const b = el("button", { class: c.dir ? "dir" : "key", text: c.label, title: api.showKey(c.key),
      onclick: () => (c.dir ? enter(c.key) : openKey(c.key)) });
    b.dataset.key = api.showKey(c.key);
    ul.append(el("li", {}, b));
  }
  if (!items.length) ul.append(el("li", { class: "muted", text: empty || "No keys here." }));
  if (count !== null && count !== undefined) {
    const where = st.mode === "tree" ? "in this folder (all depths)" : "with this prefix";
    $("count").textContent = `${count} key${count === 1 ? "" : "s"} ${where}`;
  }
  $("more").hidden = !hasMore;
  crumbs();
}

function crumbs() {
  const nav = $("crumbs"); nav.replaceChildren();
  if (st.mode !== "tree") return;
  const sep = sepBytes(); let at = 0; const d = st.dir;
  nav.append(el("button", { text: "(root)", onclick: () => enter(new Uint8Array(0)) }));
  while (at < d.length) {
    let i = indexOf(d.subarray(at), sep); i = i < 0 ? d.length : at + i + sep.length;
    const p = d.subarray(0, i);
    nav.append(el("button", { text: api.showKey(d.subarray(at, i)), onclick: () => enter(p) }));
    at = i;
  }
}

function enter(prefix) { st.dir = Uint8Array.from(prefix); st.cursor = null; st.signature = ""; clearError(); refresh(); }

// ---- the open key ----

function showValue(bytes) {
  const fmt = $("format").value; let text;
  if (fmt === "hex") text = api.hex(bytes);
  else {
    text = api.utf8(bytes);
    if (text === null) { $("format").value = "hex"; $("key-state").textContent = "The value is not UTF-8 text; shown as hex."; return showValue(bytes); }
    if (fmt === "json" && text.trim()) {
      try { text = JSON.stringify(JSON.parse(text), null, 2); }
      catch { $("format").value = "text"; $("key-state").textContent = "The value is not valid JSON; shown as text."; }
    }
  }
  $("value").value = text;
}

// The editor's bytes in the chosen format; throws a message when they do not parse.
function editedBytes() {
  const fmt = $("format").value; const text = $("value").value;
  if (fmt === "hex") return api.unhex(text);
  if (fmt === "json") {
    try { JSON.parse(text); } catch (e) { throw new Error(`Invalid JSON: ${e.message}`); }
  }
  return api.bytes(text);
}

function metaRow(dl, k, v, id) { dl.append(el("dt", { text: k }), el("dd", id ? { id, text: v } : { text: v })); }

async function showMeta(kv) {
  const dl = $("meta"); dl.replaceChildren(); clearInterval(st.leaseTimer);
  if (!kv) return;
  metaRow(dl, "create revision", String(kv.create)); metaRow(dl, "mod revision", String(kv.mod));
  metaRow(dl, "version", String(kv.version)); metaRow(dl, "size", bytesHuman(kv.value.length));
  if (kv.lease === "0") { metaRow(dl, "lease", "none"); return; }
  metaRow(dl, "lease", fmtHex(kv.lease, 16)); metaRow(dl, "lease TTL", "…", "lease-ttl");
  let ttl;
  try { ttl = Number((await api.call("/v3/lease/timetolive", { ID: kv.lease })).TTL); } catch (e) { return fail(e, "Reading the lease"); }
  const key = st.open && st.open.key; let left = ttl;
  const tick = () => {
    const d = $("lease-ttl"); if (d) d.textContent = left > 0 ? `${left} s` : "expired";
    if (left <= 0) { clearInterval(st.leaseTimer); setTimeout(() => st.open && st.open.key === key && !st.open.dirty && openKey(key, true), 600); }
    left--;
  };
  tick(); st.leaseTimer = setInterval(tick, 1000);
}

export async function openKey(key, quiet = false, tries = 0) {
  if (!quiet) { clearError(); clearNotice(); }
  const seq = ++st.openSeq; st.opening = key;   // the latest open wins over a late answer
  let r;
  try { r = await api.range(key); } catch (e) { return seq === st.openSeq && fail(e, "Reading the key"); }
  if (seq !== st.openSeq) return;
  const kv = r.kvs[0] || null;
  // A key whose lease ran out lingers until the leader revokes it: look again shortly.
  if (quiet && kv && kv.lease !== "0" && st.open && st.open.kv && kv.mod === st.open.kv.mod && tries < 10) {
    try {
      const t = await api.call("/v3/lease/timetolive", { ID: kv.lease });
      if (Number(t.TTL) <= 0) return setTimeout(() => openKey(key, true, tries + 1), 700);
    } catch { /* gone already */ }
  }
  st.open = { key, kv, isNew: false, dirty: false };
  $("detail").hidden = false; $("new-name-row").hidden = true;
  $("key-name").textContent = api.showKey(key);
  $("key-state").textContent = kv ? (api.utf8(key) === null ? "The key is not UTF-8; shown with \\xNN escapes." : "") :
    "This key does not exist (deleted, or its lease expired).";
  $("lease").value = kv ? fmtHex(kv.lease, 16) : "";
  $("history").hidden = true;
  $("format").value = st.format;
  if (kv) showValue(kv.value); else $("value").value = "";
  $("save").disabled = !kv; $("delete-key").disabled = !kv; $("show-history").disabled = !kv;
  showMeta(kv);
}

function newKey() {
  clearError(); clearNotice(); clearInterval(st.leaseTimer);
  st.openSeq++; st.opening = null;
  st.open = { key: null, kv: null, isNew: true, dirty: false };
  $("detail").hidden = false; $("new-name-row").hidden = false; $("key-name").textContent = "New key";
  $("key-state").textContent = "Type a key (\\xNN for other bytes) and a value, then Save.";
  $("new-name").value = st.mode === "tree" ? api.showKey(st.dir) : api.showKey(st.prefix);
  $("value").value = ""; $("lease").value = ""; $("meta").replaceChildren(); $("history").hidden = true;
  $("save").disabled = false; $("delete-key").disabled = true; $("show-history").disabled = true;
  $("new-name").focus();
}

async function save() {
  clearError(); clearNotice();
  const o = st.open; if (!o) return;
  let value, lease, key;
  try {
    value = editedBytes(); lease = fromHex($("lease").value);
    key = o.isNew ? api.parseKey($("new-name").value) : o.key;
    if (!key.length) throw new Error("The key is empty");
  } catch (e) { return showError(`${e.message}. Nothing was saved.`); }
  const cmp = o.isNew ? { key: api.b64(key), target: "CREATE", result: "EQUAL", create_revision: "0" }
    : { key: api.b64(key), target: "MOD", result: "EQUAL", mod_revision: String(o.kv.mod) };
  const put = { key: api.b64(key), value: api.b64(value) };
  if (lease !== "0") put.lease = lease;
  let r;
  try {
    r = await api.call("/v3/kv/txn", { compare: [cmp], success: [{ request_put: put }], failure: [{ request_range: { key: api.b64(key) } }] });
  } catch (e) { return fail(e, `Saving (${bytesHuman(value.length)}; nothing was written)`); }
  if (r.succeeded) {
    await openKey(key, true);
    notice(`Saved at revision ${r.header.revision}.`);
    refresh();
    return;
  }
  const newer = r.responses?.[0]?.response_range?.kvs?.[0];
  await openKey(key, true);
  showError(o.isNew ? "Refused: the key was created by someone else meanwhile. Their value is shown; yours was not saved." :
    `Refused: the key changed since you opened it (mod revision ${o.kv.mod} → ${newer ? newer.mod_revision : "deleted"}). The newer value is shown; your edit was not saved.`);
}

async function deleteKey() {
  const o = st.open; if (!o || !o.kv) return;
  if (!confirm(`Delete the key "${api.showKey(o.key)}"?`)) return;
  try { await api.call("/v3/kv/deleterange", { key: api.b64(o.key) }); } catch (e) { return fail(e, "Deleting"); }
  notice(`Deleted "${api.showKey(o.key)}".`); await openKey(o.key, true); refresh();
}

async function deletePrefix() {
  clearError();
  const p = api.parseKey($("prefix").value || (st.mode === "tree" ? api.showKey(st.dir) : ""));
  if (!p.length) return showError("Type a prefix first: the console does not delete the whole keyspace.");
  let n;
  try { n = (await api.range(p, api.prefixEnd(p), { count_only: true })).count; } catch (e) { return fail(e, "Counting"); }
  if (!n) return notice(`No keys with the prefix "${api.showKey(p)}".`);
  if (!confirm(`Delete all ${n} keys with the prefix "${api.showKey(p)}"?`)) return;
  let r;
  try { r = await api.call("/v3/kv/deleterange", { key: api.b64(p), range_end: api.b64(api.prefixEnd(p)) }); } catch (e) { return fail(e, "Deleting the prefix"); }
  notice(`Deleted ${Number(r.deleted || 0)} keys with the prefix "${api.showKey(p)}".`);
  st.signature = ""; refresh();
}

// Every retained revision of the open key, newest first (older generations too, while
// the revision just before a creation still holds the key).
async function history() {
  const o = st.open; if (!o || !o.kv) return;
  const rows = [o.kv]; let note = "";
  try {
    for (let cur = o.kv; rows.length < 100;) {
      const at = (cur.version === 1 ? cur.create : cur.mod) - 1;
      if (at < 1) break;
      const r = await api.range(o.key, null, { revision: String(at) });
      if (!r.kvs.length) break;
      cur = r.kvs[0]; rows.push(cur);
    }
  } catch (e) { if (/compacted/i.test(e.message)) note = "Older revisions were compacted."; else return fail(e, "Reading history"); }
  const tb = $("history-rows"); tb.replaceChildren();
  rows.forEach((kv, i) => {
    const prev = (api.utf8(kv.value) ?? api.hex(kv.value)).slice(0, 60);
    tb.append(el("tr", {},
      el("td", {}, el("input", { type: "radio", name: "hist-a", value: String(i), "aria-label": `A: revision ${kv.mod}`, ...(i === Math.min(1, rows.length - 1) ? { checked: "" } : {}) })),
      el("td", {}, el("input", { type: "radio", name: "hist-b", value: String(i), "aria-label": `B: revision ${kv.mod}`, ...(i === 0 ? { checked: "" } : {}) })),
      el("td", { text: String(kv.mod) }), el("td", { text: String(kv.version) }), el("td", { text: prev })));
  });
  st.historyRows = rows;
  $("diff-out").textContent = note; $("history").hidden = false;
}

function diff() {
  const rows = st.historyRows || [];
  const a = rows[Number(document.querySelector("input[name=hist-a]:checked")?.value)];
  const b = rows[Number(document.querySelector("input[name=hist-b]:checked")?.value)];
  if (!a || !b) return;
  const text = (kv) => api.utf8(kv.value) ?? api.hex(kv.value);
  const out = $("diff-out"); out.replaceChildren();
  for (const [op, line] of lineDiff(text(a), text(b))) {
    out.append(el("span", { class: op === "+" ? "add" : op === "-" ? "del" : "", text: `${op} ${line}\n` }));
  }
}

// A change seen by the watch (or the poller): refresh the listing and the open key.
export function changed(events) {
  const o = st.open; const k = st.opening;   // the key shown, or being read right now
  if (k && events.some((e) => e.kv.key.length === k.length && startsWith(e.kv.key, k))) {
    if (o && o.dirty && o.key === k) $("key-state").textContent = "Someone else changed this key; saving will be refused. Reload to see it.";
    else openKey(k, true);
  }
  clearTimeout(st.debounce); st.debounce = setTimeout(() => refresh(), 250);
}
export async function poll() {
  refresh();
  const o = st.open;
  if (o && o.key && !o.dirty) {
    try { const r = await api.range(o.key, null, { keys_only: true }); const m = r.kvs[0]?.mod || 0;
      if (m !== (o.kv?.mod || 0)) openKey(o.key, true); } catch { /* shown by refresh */ }
  }
}

export function init() {
  $("mode").addEventListener("change", () => { st.mode = $("mode").value; st.signature = ""; st.cursor = null; refresh(); });
  $("sep").addEventListener("change", () => { st.signature = ""; refresh(); });
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); clearError();
    const p = api.parseKey($("prefix").value);
    if (st.mode === "tree") {   // a folder in tree mode, else the flat list
      const s = sepBytes();
      if (p.length >= s.length && startsWith(p.subarray(p.length - s.length), s)) return enter(p);
      st.mode = "list"; $("mode").value = "list";
    }
    st.prefix = p; st.cursor = null; st.signature = ""; refresh();
  });
  $("more").addEventListener("click", () => refresh(true));
  $("new-key").addEventListener("click", newKey);
  $("save").addEventListener("click", save);
  $("reload").addEventListener("click", () => st.open && (st.open.isNew ? newKey() : openKey(st.open.key)));
  $("delete-key").addEventListener("click", deleteKey);
  $("delete-prefix").addEventListener("click", deletePrefix);
  $("show-history").addEventListener("click", history);
  $("diff").addEventListener("click", diff);
  $("value").addEventListener("input", () => { if (st.open) st.open.dirty = true; });
  let fmtWas = $("format").value;
  $("format").addEventListener("change", () => {
    const to = $("format").value; $("format").value = fmtWas;
    let b; try { b = editedBytes(); } catch (e) { showError(`${e.message}; fix it before switching views.`); return; }
    $("format").value = to; st.format = to; clearError(); showValue(b); fmtWas = $("format").value;
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) { ev.preventDefault(); $("prefix").focus(); }
  });
}
