// The operator's page. Plain JavaScript, no build step, nothing from the internet: it talks
// only to the station that served it (docs/api.md). The token stays in sessionStorage, so
// it is gone when the tab closes. Live updates come from GET /api/events, read with fetch()
// because EventSource cannot send an Authorization header.
"use strict";

const TOKEN_KEY = "station.token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  me: null,
  batch: null,          // the batch on show (the line's, else the newest open one)
  progress: null,
  fixtures: new Map(),  // number -> FixtureView
  lastEventId: "",
  stream: null,         // AbortController of the running event stream
  qr: new Map(),        // serial -> object URL of its label preview
  timers: {},
};

const $ = (id) => document.getElementById(id);

// ---- plain words for the operator

const STATUS_WORDS = {
  idle: "Waiting for a device",
  busy: "Working",
  done: "Done: remove the device",
  failed: "Failed",
  paused: "Paused",
  offline: "Offline",
};
const STEP_WORDS = {
  detected: "device found",
  reserved: "serial number reserved",
  keyed: "keys ready",
  issued: "certificate issued",
  written: "writing to the device",
  verified: "checked",
  locked: "locked",
  labelled: "label printed",
  done: "finished",
};
const DEFAULT_HINTS = {
  failed: "Take the device out and put it in again. If it fails twice, set it aside for inspection.",
  offline: "Check the fixture's cable and power.",
  paused: "The batch is paused or the HSM is unavailable; work resumes by itself when it is back.",
};
const LABEL_WORDS = { printed: "printed", failed: "print failed", reprinted: "reprinted" };

// ---- API

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    signOut("Your token was not accepted: sign in again.");
    throw new ApiError(401, null);
  }
  const type = res.headers.get("Content-Type") || "";
  const data = type.startsWith("application/json") ? await res.json() : await res.blob();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function toast(text, ms = 5000) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(state.timers.toast);
  state.timers.toast = setTimeout(() => { t.hidden = true; }, ms);
}

function alarm(text) {
  const a = $("alarm");
  a.textContent = text || "";
  a.hidden = !text;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// ---- sign in / out

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  state.me = null;
  if (state.stream) state.stream.abort();
  $("main").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setConnected(false);
}

async function signIn(token) {
  state.token = token.trim();
  try {
    state.me = await api("GET", "/api/whoami");
  } catch (e) {
    if (e.status !== 401) $("login-error").textContent = e.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("login").hidden = true;
  $("main").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `${state.me.name} (${state.me.role})`;
  const runsLine = state.me.role === "operator" || state.me.role === "officer";
  document.body.classList.toggle("read-only", !runsLine);
  $("open-batch").hidden = !runsLine;
  await reloadAll();
  startEvents();
  clearInterval(state.timers.poll);
  // Devices per minute moves without events; a slow poll keeps it (and a missed event) true.
  state.timers.poll = setInterval(() => { refreshProgress(); }, 5000);
}

// ---- data

async function reloadAll() {
  await Promise.all([refreshFixtures(), refreshProgress(), refreshDevices()]);
}

async function refreshFixtures() {
  try {
    const list = await api("GET", "/api/fixtures");
    state.fixtures = new Map(list.map((f) => [f.number, f]));
    renderFixtures();
  } catch (e) { if (e.status !== 401) toast(`Fixtures: ${e.message}`); }
}

async function refreshProgress() {
  try {
    const [progress, batches] = await Promise.all([api("GET", "/api/progress"), api("GET", "/api/batches")]);
    state.progress = progress;
    const named = progress.batch ? batches.find((b) => b.name === progress.batch) : null;
    const open = batches.filter((b) => b.state !== "closed");
    state.batch = named || open[open.length - 1] || null;
    renderProgress();
  } catch (e) { if (e.status !== 401) toast(`Progress: ${e.message}`); }
}

async function refreshDevices() {
  try {
    const q = state.batch ? `?last=12&batch=${encodeURIComponent(state.batch.name)}` : "?last=12";
    renderDevices(await api("GET", `/api/devices${q}`));
  } catch (e) { if (e.status !== 401) toast(`Devices: ${e.message}`); }
}

// Many events in a burst (a whole line finishing) cause one refresh, not one each.
function soon(name, fn, ms = 400) {
  if (state.timers[name]) return;
  state.timers[name] = setTimeout(() => { state.timers[name] = null; fn(); }, ms);
}

// ---- rendering

function renderProgress() {
  const b = state.batch;
  const p = state.progress || {};
  $("batch-title").textContent = b ? `${b.name}: ${b.product}` : "No batch open";
  const pill = $("batch-state");
  pill.textContent = b ? b.state : "";
  pill.className = `pill ${b ? b.state : ""}`;
  const counts = b || { done: 0, failed: 0, in_flight: 0 };
  const qty = b ? b.quantity : 0;
  $("c-done").textContent = counts.done;
  $("c-qty").textContent = qty;
  $("c-failed").textContent = counts.failed;
  $("c-flight").textContent = counts.in_flight;
  $("c-rate").textContent = p.running && typeof p.devices_per_min === "number" ? p.devices_per_min.toFixed(1) : "0";
  const bar = $("batch-bar");
  bar.max = Math.max(qty, 1);
  bar.value = Math.min(counts.done, bar.max);
  const runsLine = state.me && state.me.role !== "auditor";
  $("batch-pause").hidden = !(runsLine && b && b.state === "open");
  $("batch-resume").hidden = !(runsLine && b && b.state === "paused");
  $("batch-close").hidden = !(runsLine && b && b.state !== "closed");
  let line = p.running ? "Line running." : "The line is not running.";
  if (p.hsm === "unavailable") line += " The HSM is unavailable: no certificates can be issued until it is back.";
  $("line-state").textContent = line;
  if (p.hsm === "unavailable") alarm("HSM unavailable: fixtures are paused until it is back. Call a security officer.");
  else if ($("alarm").dataset.kind !== "event") alarm("");
}

function renderFixtures() {
  const box = $("fixtures");
  const list = [...state.fixtures.values()].sort((a, b) => a.number - b.number);
  $("no-fixtures").hidden = list.length > 0;
  box.replaceChildren(...list.map(fixtureTile));
}

function fixtureTile(f) {
  const t = el("div", `tile ${f.status}`);
  // Stable hooks for scripts and tests (tests/e2e/web): the number, state and tallies.
  t.dataset.fixture = f.number;
  t.dataset.status = f.status;
  t.dataset.done = f.done;
  t.dataset.failed = f.failed;
  t.append(el("div", "name", f.name || `Fixture ${f.number}`));
  let status = STATUS_WORDS[f.status] || f.status;
  if (f.status === "busy" && f.step) status += `: ${STEP_WORDS[f.step] || f.step}`;
  t.append(el("div", "status", status));
  if (f.serial) t.append(el("div", "serial", f.serial));
  if (f.reason) t.append(el("div", "reason", f.reason));
  const hint = f.hint || DEFAULT_HINTS[f.status];
  if (hint && f.status !== "idle" && f.status !== "busy" && f.status !== "done") t.append(el("div", "hint", hint));
  t.append(el("div", "tally", `${f.done} done, ${f.failed} failed`));
  return t;
}

function renderDevices(rows) {
  const body = $("devices");
  // The rows are identities, newest first: a device that was retried has one per attempt
  // (the earlier ones voided). Show each device once, as its newest identity.
  const shown = new Set();
  const list = rows.filter((d) => !shown.has(d.serial) && shown.add(d.serial));
  $("no-devices").hidden = list.length > 0;
  const keep = new Set(list.map((d) => d.serial));
  for (const [serial, url] of state.qr) {
    if (!keep.has(serial)) { URL.revokeObjectURL(url); state.qr.delete(serial); }
  }
  body.replaceChildren(...list.map(deviceRow));
}

function deviceRow(d) {
  const tr = el("tr");
  tr.dataset.serial = d.serial;
  const qrCell = el("td");
  // A preview only of a live identity: a voided one's label must not be shown (nor printed).
  if (d.identity_status === "active" && d.dpp_uri) {
    const img = el("img", "qr");
    img.alt = `label of ${d.serial}`;
    qrCell.append(img);
    loadPreview(d.serial, img);
  }
  tr.append(qrCell);
  tr.append(el("td", "serial", d.serial));
  const st = el("td", `state-${d.state}`, d.state === "failed" && d.reason ? `failed: ${d.reason}` : d.state);
  tr.append(st);
  tr.append(el("td", null, d.fixture || ""));
  tr.append(el("td", null, d.label ? (LABEL_WORDS[d.label.result] || d.label.result) : "not printed"));
  const act = el("td");
  if (state.me && state.me.role !== "auditor" && d.state !== "failed" && d.state !== "voided") {
    const btn = el("button", null, "Reprint");
    btn.type = "button";
    btn.addEventListener("click", () => reprint(d.serial, btn));
    act.append(btn);
  }
  // An officer's decision (docs/pipeline.md): a done device goes back to the line.
  if (state.me && state.me.role === "officer" && d.state === "done") {
    const btn = el("button", "reprovision", "Re-provision…");
    btn.type = "button";
    btn.addEventListener("click", () => reprovision(d.serial, btn));
    act.append(btn);
  }
  tr.append(act);
  return tr;
}

async function loadPreview(serial, img) {
  let url = state.qr.get(serial);
  if (!url) {
    try {
      const blob = await api("GET", `/api/devices/${encodeURIComponent(serial)}/label.png`);
      url = URL.createObjectURL(blob);
      state.qr.set(serial, url);
    } catch (e) {
      img.alt = "no preview";
      return;
    }
  }
  img.src = url;
}

// ---- actions

async function reprint(serial, btn) {
  btn.disabled = true;
  try {
    const r = await api("POST", `/api/devices/${encodeURIComponent(serial)}/reprint`, {});
    toast(r.status === "printed" ? `Label for ${serial} sent to ${r.printer}.` : `Label for ${serial} failed: ${r.detail}`);
    soon("devices", refreshDevices);
  } catch (e) {
    if (e.status !== 401) toast(`Reprint of ${serial} failed: ${e.message}`);
  } finally {
    btn.disabled = false;
  }
}

async function reprovision(serial, btn) {
  const why = prompt(`Re-provision ${serial}? Its certificate is revoked and the line gives it a new key and ` +
                     "certificate when it is next in a fixture. Why (kept in the journal)?");
  if (why === null) return;
  if (!why.trim()) { toast("Nothing done: give the reason."); return; }
  btn.disabled = true;
  try {
    const r = await api("POST", `/api/devices/${encodeURIComponent(serial)}/reprovision`, { reason: why.trim() });
    toast(`${serial} goes back to the line in batch ${r.batch || "(none)"}: put it in a fixture.`);
    soon("devices", refreshDevices);
  } catch (e) {
    if (e.status !== 401) toast(`Re-provisioning ${serial} failed: ${e.message}`);
  } finally {
    btn.disabled = false;
  }
}

async function batchAction(verb) {
  const b = state.batch;
  if (!b) return;
  if (verb === "close" && !confirm(`Close batch ${b.name}? No more devices can be made in it.`)) return;
  try {
    await api("POST", `/api/batches/${encodeURIComponent(b.name)}/${verb}`, {});
    await refreshProgress();
  } catch (e) {
    if (e.status !== 401) toast(`${verb} ${b.name}: ${e.message}`);
  }
}

async function openBatch(ev) {
  ev.preventDefault();
  const f = ev.target;
  $("open-error").textContent = "";
  const body = {
    name: f.name.value.trim(),
    product: f.product.value.trim(),
    quantity: Number.parseInt(f.quantity.value, 10),
    serial_pattern: f.serial_pattern.value.trim(),
    label_template: f.label_template.value.trim(),
    key_mode: f.key_mode.value,
    lock: f.lock.checked,
  };
  try {
    const b = await api("POST", "/api/batches", body);
    toast(`Batch ${b.name} is open.`);
    f.name.value = "";
    await refreshProgress();
    await refreshDevices();
  } catch (e) {
    if (e.status !== 401) $("open-error").textContent = e.message;
  }
}

// ---- live events (Server-Sent Events over fetch)

function setConnected(on) {
  const c = $("conn");
  c.textContent = on ? "live" : "offline";
  c.className = `pill ${on ? "pill-on" : "pill-off"}`;
}

function onEvent(type, data) {
  switch (type) {
    case "fixture":
      state.fixtures.set(data.number, data);
      renderFixtures();
      break;
    case "device":
      soon("devices", refreshDevices);
      soon("progress", refreshProgress);
      break;
    case "batch":
      soon("progress", refreshProgress, 100);
      soon("devices", refreshDevices);
      break;
    case "alarm": {
      // {"hsm": "unavailable"|"ok", "message"} from the line; "ok" clears the banner.
      const cleared = data.cleared || data.hsm === "ok";
      const text = data.hsm === "unavailable"
        ? `HSM unavailable: fixtures are paused until it is back. Call a security officer. (${data.message || ""})`
        : data.text || data.message || "Alarm";
      $("alarm").dataset.kind = cleared ? "" : "event";
      alarm(cleared ? "" : text);
      if (cleared && data.message) toast(data.message);
      soon("progress", refreshProgress, 100);
      break;
    }
    case "lagged":
      // Events were lost (a slow screen or a restart): re-read everything shown.
      reloadAll();
      break;
    default:
      break;
  }
}

async function startEvents() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let delay = 1000;
  while (!controller.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const res = await fetch("/api/events", { headers, signal: controller.signal, cache: "no-store" });
      if (res.status === 401) { signOut("Your token was not accepted: sign in again."); return; }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setConnected(true);
      delay = 1000;
      if (state.lastEventId) reloadAll();  // whatever happened while away
      await readStream(res.body.getReader());
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    setConnected(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function readStream(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message", data = "", id = null;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // comment: heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = val;
        else if (field === "data") data += (data ? "\n" : "") + val;
        else if (field === "id") id = val;
      }
      if (id !== null) state.lastEventId = id;
      if (!data) continue;
      try { onEvent(type, JSON.parse(data)); } catch (e) { /* a malformed event is skipped */ }
    }
  }
}

// ---- start

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("token");
    const token = input.value;
    input.value = "";
    signIn(token);
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("open-form").addEventListener("submit", openBatch);
  $("batch-pause").addEventListener("click", () => batchAction("pause"));
  $("batch-resume").addEventListener("click", () => batchAction("resume"));
  $("batch-close").addEventListener("click", () => batchAction("close"));
  if (state.token) signIn(state.token);
  else signOut("");
});
