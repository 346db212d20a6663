// Small page helpers shared by the views: element lookup, the error and notice bars,
// and one place that turns a failed call into what the user sees.
export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

export function showError(msg) { const b = $("error"); b.textContent = msg; b.hidden = false; $("notice").hidden = true; }
export function clearError() { $("error").hidden = true; $("error").textContent = ""; }
export function notice(msg) { const b = $("notice"); b.textContent = msg; b.hidden = false; }
export function clearNotice() { $("notice").hidden = true; }

// Set by app.js: what to do when a call says the user must (again) log in.
export const hooks = { login: (why) => showError(why) };

// A failed call: a login prompt when the session is missing or expired, else the
// server's own message, prefixed with what was being done.
export function fail(e, doing) {
  if (e && e.authNeeded) {
    hooks.login(e.expired ? `Your session expired. Log in again${doing ? ` (${doing} was not done)` : ""}.` : "This cluster requires a login.");
    return;
  }
  showError(`${doing ? doing + " failed: " : ""}${e && e.message ? e.message : e}`);
}

// IDs in hex as etcdctl prints them (leases %016x, members %x).
export const fmtHex = (dec, width = 0) => (dec && dec !== "0" ? BigInt(dec).toString(16).padStart(width, "0") : "");
export function fromHex(h) {
  h = (h || "").trim().toLowerCase().replace(/^0x/, "");
  if (!h || h === "0" || h === "none") return "0";
  if (!/^[0-9a-f]{1,16}$/.test(h)) throw new Error(`Invalid lease ID "${h}": use the hex ID etcdctl prints`);
  return BigInt("0x" + h).toString();
}
export function bytesHuman(n) {
  n = Number(n || 0);
  return n >= 1048576 ? (n / 1048576).toFixed(2) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
}
