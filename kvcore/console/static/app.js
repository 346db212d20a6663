// The console's entry: routing between views (#/keys, #/leases, #/members, #/metrics),
// login when auth is on, and live updates (a /v3/watch stream, else polling).
import * as api from "./api.js";
import * as keys from "./keys.js";
import * as cluster from "./cluster.js";
import { $, showError, clearError, notice, hooks } from "./ui.js";

const VIEWS = ["keys", "leases", "members", "metrics"];
let live = null;

function route() {
  const v = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const view = VIEWS.includes(v) ? v : "keys";
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== view || !$("login").hidden;
    $(`nav-${name}`).toggleAttribute("aria-current", name === view);
    if (name === view) $(`nav-${name}`).setAttribute("aria-current", "page");
  }
  if (!$("login").hidden) return;
  if (view === "leases") cluster.leases();
  if (view === "members") cluster.members();
  if (view === "metrics") cluster.drawCharts();
}

function showLogin(why) {
  stopLive();
  api.session.clear();
  $("login-why").textContent = why;
  $("login").hidden = false;
  for (const name of VIEWS) $(`view-${name}`).hidden = true;
  $("user").textContent = ""; $("logout").hidden = true;
  $("login-user").focus();
}

async function login(ev) {
  ev.preventDefault(); clearError();
  const name = $("login-user").value;
  try {
    const r = await api.call("/v3/auth/authenticate", { name, password: $("login-pass").value });
    api.session.set(r.token, name);
  } catch (e) { $("login-pass").value = ""; return showError(`Login failed: ${e.message}`); }
  $("login-pass").value = ""; $("login").hidden = true;
  start();
}

function stopLive() { if (live) { live.stop(); live = null; } $("live").textContent = ""; }

// Live updates: one watch over the whole keyspace; if the endpoint has no streaming
// /v3/watch (or it breaks), poll every 1.5 s instead and try the watch again later.
function startLive(rev) {
  stopLive();
  const ctl = new AbortController(); let timer = null, stopped = false, last = rev;
  const polling = () => {
    $("live").textContent = "live: polling";
    timer = setInterval(keys.poll, 1500);
  };
  const run = () => {
    $("live").textContent = "live: watching";
    api.watch(new Uint8Array([0]), new Uint8Array([0]), last + 1, (events, r) => { last = r; keys.changed(events); }, ctl.signal)
      .then(() => { if (!stopped) { polling(); } })
      .catch(() => { if (!stopped) polling(); });
  };
  run();
  live = { stop() { stopped = true; ctl.abort(); clearInterval(timer); } };
}

async function start() {
  let rev = 0;
  // The revision to watch from: a one-key read (a range over everything would count it all).
  try { rev = (await api.range(new Uint8Array([0]), null, { keys_only: true })).rev; }
  catch (e) {
    if (e.authNeeded) return showLogin(e.expired ? "Your session expired. Log in again." : "This cluster requires a login.");
    if (!/permission denied/i.test(e.message)) showError(`Cannot read from the cluster: ${e.message}`);
  }
  $("user").textContent = api.session.user ? `user: ${api.session.user}` : "";
  $("logout").hidden = !api.session.token;
  route();
  keys.refresh();
  startLive(rev);
}

hooks.login = showLogin;
window.addEventListener("hashchange", route);
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", () => { showLogin("Logged out."); notice("Logged out."); });
keys.init(); cluster.init();
setInterval(() => { if (location.hash === "#/leases" && $("login").hidden) cluster.tickLeases(); }, 1000);
setInterval(() => { if (location.hash === "#/members" && $("login").hidden) cluster.members(); }, 3000);
setInterval(cluster.sampleMetrics, 5000); cluster.sampleMetrics();
start();
