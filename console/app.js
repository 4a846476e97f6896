// Vigil console: one page, no build step. It reads the engine's scoped API
// with the bearer token the user signs in with (kept in sessionStorage, sent
// only in the Authorization header, never in a URL) and streams alarms over
// the SSE feed with fetch(), since EventSource cannot send that header.
// What a token may see is decided by the server; the page only shows it.
"use strict";

(() => {
  const TOKEN_KEY = "vigil.token";
  const SEVERITY_RANK = { critical: 4, major: 3, minor: 2, warning: 1 };
  const COLOURS = ["red", "orange", "yellow", "blue"];
  const COLOUR_FILL = { blue: "#3b82c4", yellow: "#e8c31a", orange: "#f08c00", red: "#d6332b" };
  const FEED_IDLE_MS = 45000; // the feed sends a keep-alive every 15 s

  // What the page knows. Exposed as window.vigilConsole for people poking at
  // it in the browser's devtools, and for the end-to-end tests.
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    config: { tile_url: "", tile_attribution: "" },
    me: null,
    alarms: new Map(), // alarm_id -> latest alarm JSON (open alarms only)
    units: new Map(), // equipment_id -> unit from GET /fleet
    feed: { state: "idle", synced: false, everSynced: false, controller: null, connects: 0 },
    seen: {}, // alarm_id -> Date.now() when its row first appeared
    beeps: 0,
    view: null,
    regionNames: new Map(),
    outline: null,
  };
  window.vigilConsole = state;

  // ---------- helpers ----------
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const fmtTime = (ms) => (ms == null ? "" : new Date(ms).toLocaleString());
  const pct = (x) => (x == null ? "–" : (x * 100).toFixed(1) + " %");
  const num = (x, digits = 1) => (x == null ? "–" : Number(x).toFixed(digits));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function errorOf(response) {
    let code = "http_" + response.status;
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch (_) { /* not JSON */ }
    return new ApiError(response.status, code, message);
  }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + state.token, Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/api/v1" + path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401) sessionEnded(error.message);
      throw error;
    }
    return response.json();
  }

  let toastTimer = null;
  document.addEventListener("DOMContentLoaded", () => $("toast").addEventListener("click", () => { $("toast").hidden = true; }));
  function toast(message, bad = false) {
    const t = $("toast");
    t.textContent = message;
    t.classList.toggle("bad", bad);
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  function regionName(code) {
    return state.regionNames.get(code) || code;
  }

  // ---------- sign in and out ----------
  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    const err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("token").focus();
  }

  function sessionEnded(message) {
    stopFeed();
    state.token = null;
    state.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message ? `Signed out: ${message}` : "");
  }

  async function signIn(token) {
    state.token = token;
    try {
      state.me = await api("/me");
    } catch (e) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      const why = e instanceof ApiError ? e.message : "the engine cannot be reached";
      showLogin(`Sign-in refused: ${why}`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    const grant = state.me.regions.length
      ? state.me.regions.map((r) => `${regionName(r)} (${r})`).join(", ")
      : state.me.owner_id ? `owner ${state.me.owner_id}` : "all regions";
    $("whoami").textContent = `${state.me.role} · ${grant}`;
    await loadUnits();
    startFeed();
    route();
  }

  // ---------- audible and visible cue ----------
  let audio = null;
  function audioContext() {
    if (!audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx) audio = new Ctx();
    }
    if (audio && audio.state === "suspended") audio.resume();
    return audio;
  }

  function beep() {
    state.beeps += 1;
    const ctx = audioContext();
    if (!ctx) return;
    const t0 = ctx.currentTime;
    for (const start of [0, 0.3, 0.6]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, t0 + start);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + start + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + start);
      osc.stop(t0 + start + 0.22);
    }
  }

  function cue(alarm) {
    beep();
    const unit = state.units.get(alarm.equipment_id);
    const where = unit ? ` — ${unit.address}` : "";
    const banner = $("banner");
    banner.textContent = `New critical alarm: ${alarm.rule} on ${alarm.equipment_id}${where}`;
    banner.dataset.alarmId = alarm.alarm_id;
    banner.hidden = false;
    // Restart the flashing for every new alarm.
    banner.style.animation = "none";
    void banner.offsetWidth;
    banner.style.animation = "";
    document.title = "(!) Vigil console";
  }

  // ---------- the live feed ----------
  function setFeed(s) {
    state.feed.state = s;
    const el = $("feed-status");
    el.dataset.state = s;
    el.textContent = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", idle: "offline" }[s] || s;
  }

  function stopFeed() {
    state.feed.running = false;
    if (state.feed.controller) state.feed.controller.abort();
  }

  function startFeed() {
    if (state.feed.running) return;
    state.feed.running = true;
    runFeed();
  }

  function parseEvent(block) {
    let event = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
    }
    return data || event !== "message" ? { event, data } : null;
  }

  // One connection after another until sign-out: a dropped connection is
  // retried with back-off (1 s doubling to 15 s), and each new connection
  // starts with the full open set, which replaces the board.
  async function runFeed() {
    let backoff = 1000;
    while (state.feed.running) {
      const controller = new AbortController();
      state.feed.controller = controller;
      setFeed(state.feed.everSynced ? "reconnecting" : "connecting");
      let idle = null;
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), FEED_IDLE_MS);
      };
      try {
        const response = await fetch("/api/v1/alarms/stream", {
          headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          sessionEnded((await errorOf(response)).message);
          return;
        }
        if (!response.ok) throw await errorOf(response);
        state.feed.connects += 1;
        touch();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        const snapshot = new Map();
        let synced = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          touch();
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const ev = parseEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (!ev) continue;
            if (ev.event === "alarm") {
              const alarm = JSON.parse(ev.data);
              if (synced) applyChange(alarm);
              else snapshot.set(alarm.alarm_id, alarm);
            } else if (ev.event === "synced") {
              synced = true;
              resync(snapshot);
              backoff = 1000;
              setFeed("live");
            } else if (ev.event === "lagged") {
              // Changes were missed: start again from a fresh snapshot.
              controller.abort();
            }
          }
        }
      } catch (e) {
        if (e instanceof ApiError && e.status === 403) {
          toast(e.message, true);
        }
      } finally {
        clearTimeout(idle);
      }
      if (!state.feed.running) break;
      setFeed("reconnecting");
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
    setFeed("idle");
  }

  // A new connection's snapshot is the whole truth: alarms that cleared
  // while the page was away disappear, none is shown twice.
  function resync(snapshot) {
    const before = new Set(state.alarms.keys());
    state.alarms = new Map(snapshot);
    if (state.feed.everSynced) {
      for (const a of snapshot.values()) {
        if (!before.has(a.alarm_id) && a.severity === "critical" && a.state === "active") cue(a);
      }
    }
    state.feed.everSynced = true;
    state.feed.synced = true;
    alarmsChanged();
  }

  function applyChange(alarm) {
    const known = state.alarms.get(alarm.alarm_id);
    if (known && known.version >= alarm.version) return; // an old copy
    if (alarm.state === "cleared") {
      state.alarms.delete(alarm.alarm_id);
    } else {
      state.alarms.set(alarm.alarm_id, alarm);
      if (!known && alarm.severity === "critical" && alarm.state === "active") cue(alarm);
    }
    alarmsChanged();
  }

  let unitsReload = null;
  function alarmsChanged() {
    renderBoard();
    // Owner names and addresses come from the fleet list; fetch it again for
    // equipment the page has not seen, and keep map colours current.
    const unknown = [...state.alarms.values()].some((a) => !state.units.has(a.equipment_id));
    if (unknown || state.view === "map") {
      clearTimeout(unitsReload);
      unitsReload = setTimeout(async () => {
        await loadUnits();
        renderBoard();
        if (state.view === "map") renderMap();
      }, unknown ? 200 : 2000);
    }
  }

  async function loadUnits() {
    try {
      const body = await api("/fleet");
      state.units = new Map(body.units.map((u) => [u.equipment_id, u]));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) toast(`Fleet not loaded: ${e.message}`, true);
    }
  }

  // ---------- alarm board ----------
  function sortedAlarms() {
    return [...state.alarms.values()].sort((a, b) =>
      (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0)
      || b.raised_at - a.raised_at
      || (a.alarm_id < b.alarm_id ? -1 : 1));
  }

  function fillRow(tr, a) {
    const unit = state.units.get(a.equipment_id);
    tr.dataset.state = a.state;
    tr.dataset.version = a.version;
    tr.dataset.severity = a.severity;
    const cells = tr.children;
    cells[0].innerHTML = `<span class="sev ${esc(a.severity)}">${esc(a.severity)}</span>`;
    cells[1].innerHTML = `${esc(a.rule)}${a.count > 1 ? ` <span class="muted">×${a.count}</span>` : ""}`
      + (a.details && a.details.escalation ? `<div class="error">escalated: ${esc(a.details.escalation)}</div>` : "");
    cells[2].innerHTML = `<a href="#/equipment/${encodeURIComponent(a.equipment_id)}">${esc(a.equipment_id)}</a><div class="muted">${esc(a.category)}</div>`;
    cells[3].innerHTML = `${esc(unit && unit.owner_name ? unit.owner_name : a.owner_id)}`;
    cells[4].innerHTML = `${esc(unit ? unit.address : "")}<div class="muted">${esc(regionName(a.region))}</div>`;
    cells[5].dataset.since = a.raised_at;
    cells[5].textContent = duration(Date.now() - a.raised_at);
    cells[6].innerHTML = a.state === "acknowledged"
      ? `acknowledged<div class="muted">by ${esc(a.acknowledged_by || "")}</div>`
      : "active";
    const actions = cells[7];
    const may = state.me && state.me.may_handle_alarms;
    const ack = actions.querySelector("button.ack");
    ack.hidden = !may || a.state !== "active";
    actions.querySelector("button.resolve").hidden = !may;
  }

  function newRow(a) {
    const tr = document.createElement("tr");
    tr.dataset.alarmId = a.alarm_id;
    for (let i = 0; i < 8; i++) tr.appendChild(document.createElement("td"));
    tr.children[5].className = "open-for";
    tr.children[7].className = "actions";
    tr.children[7].innerHTML = `<button type="button" class="ack">Acknowledge</button><button type="button" class="resolve secondary">Resolve…</button>`;
    tr.querySelector("button.ack").addEventListener("click", () => acknowledge(a.alarm_id, tr));
    tr.querySelector("button.resolve").addEventListener("click", () => openResolve(a.alarm_id, tr));
    return tr;
  }

  function renderBoard() {
    const body = $("board-rows");
    const rows = new Map([...body.children].map((tr) => [tr.dataset.alarmId, tr]));
    const list = sortedAlarms();
    let position = 0;
    for (const a of list) {
      let tr = rows.get(a.alarm_id);
      if (!tr) {
        tr = newRow(a);
        if (!(a.alarm_id in state.seen)) {
          state.seen[a.alarm_id] = Date.now();
          if (state.feed.everSynced && a.severity === "critical") tr.classList.add("fresh");
        }
      }
      rows.delete(a.alarm_id);
      fillRow(tr, a);
      if (body.children[position] !== tr) body.insertBefore(tr, body.children[position] || null);
      position += 1;
    }
    for (const gone of rows.values()) gone.remove();
    $("board-count").textContent = list.length;
    $("board-empty").hidden = list.length > 0;
    const bySeverity = {};
    for (const a of list) bySeverity[a.severity] = (bySeverity[a.severity] || 0) + 1;
    $("board-summary").innerHTML = Object.keys(SEVERITY_RANK)
      .filter((s) => bySeverity[s])
      .map((s) => `<span><span class="sev ${s}">${s}</span> ${bySeverity[s]}</span>`)
      .join("");
  }

  async function acknowledge(id, tr) {
    const button = tr.querySelector("button.ack");
    button.disabled = true;
    try {
      applyChange(await api(`/alarms/${encodeURIComponent(id)}/ack`, { method: "POST", body: {} }));
      toast(`Acknowledged ${id}.`);
    } catch (e) {
      toast(`Not acknowledged: ${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  function openResolve(id, tr) {
    const cell = tr.children[7];
    if (cell.querySelector(".resolve-form")) return;
    const form = document.createElement("form");
    form.className = "resolve-form";
    form.innerHTML = `<input name="note" placeholder="How was it handled?" required maxlength="4096"><button type="submit">Resolve</button><button type="button" class="secondary cancel">Cancel</button>`;
    form.querySelector(".cancel").addEventListener("click", () => form.remove());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = form.note.value.trim();
      if (!note) return;
      form.querySelector("button[type=submit]").disabled = true;
      try {
        applyChange(await api(`/alarms/${encodeURIComponent(id)}/resolve`, { method: "POST", body: { note } }));
        toast(`Resolved ${id}.`);
      } catch (e) {
        toast(`Not resolved: ${e.message}`, true);
        form.querySelector("button[type=submit]").disabled = false;
      }
    });
    cell.appendChild(form);
    form.note.focus();
  }

  setInterval(() => {
    for (const td of document.querySelectorAll("#board-rows td.open-for")) {
      td.textContent = duration(Date.now() - Number(td.dataset.since));
    }
  }, 1000);

  // ---------- region outline and names ----------
  async function loadOutline() {
    if (state.outline) return state.outline;
    try {
      const response = await fetch("/console/geo/guangdong.geojson");
      state.outline = await response.json();
    } catch (_) {
      state.outline = { type: "FeatureCollection", features: [] };
    }
    for (const f of state.outline.features) {
      const p = f.properties;
      state.regionNames.set(p.code, p.name);
      state.regionNames.set(p.city_code, p.city_name);
      state.regionNames.set(p.code.slice(0, 2) + "0000", p.province);
    }
    return state.outline;
  }

  // ---------- map ----------
  let map = null;
  let outlineLayer = null;
  let unitLayer = null;

  function outlineFeatures() {
    const all = state.outline.features;
    const prefixes = new Set();
    if (state.me.regions.length) {
      for (const r of state.me.regions) prefixes.add(r.endsWith("0000") ? r.slice(0, 2) : r.endsWith("00") ? r.slice(0, 4) : r);
    } else {
      for (const u of state.units.values()) prefixes.add(u.region.slice(0, 4));
    }
    const mine = all.filter((f) => [...prefixes].some((p) => f.properties.code.startsWith(p) || p.startsWith(f.properties.code)));
    return mine.length ? mine : all;
  }

  function renderMap() {
    if (!window.L) return;
    if (!map) {
      map = L.map("map", { zoomSnap: 0.25, attributionControl: true });
      if (state.config.tile_url) {
        L.tileLayer(state.config.tile_url, { attribution: esc(state.config.tile_attribution), maxZoom: 19 }).addTo(map);
      }
      outlineLayer = L.geoJSON(outlineFeatures(), {
        style: { color: "#6b7f96", weight: 1, fillColor: "#f4f1ea", fillOpacity: state.config.tile_url ? 0.15 : 0.9 },
        onEachFeature: (f, layer) => layer.bindTooltip(`${f.properties.name} (${f.properties.code})`, { sticky: true }),
      }).addTo(map);
      unitLayer = L.layerGroup().addTo(map);
    }
    unitLayer.clearLayers();
    const counts = { red: 0, orange: 0, yellow: 0, blue: 0, ungraded: 0, alarm: 0, placed: 0, unplaced: 0 };
    const bounds = [];
    for (const u of state.units.values()) {
      if (u.lat == null || u.lon == null) {
        counts.unplaced += 1;
        continue;
      }
      counts.placed += 1;
      const colour = u.risk_colour || "ungraded";
      counts[colour] = (counts[colour] || 0) + 1;
      const alarmed = u.open_alarms > 0;
      if (alarmed) counts.alarm += 1;
      const marker = L.circleMarker([u.lat, u.lon], {
        radius: alarmed ? 10 : 7,
        color: alarmed ? "#b00020" : "#334",
        weight: alarmed ? 4 : 1,
        fillColor: COLOUR_FILL[u.risk_colour] || "#9aa5b1",
        fillOpacity: 0.95,
        className: `unit-marker unit-${colour}${alarmed ? " unit-alarm" : ""}`,
      });
      marker.bindPopup(
        `<b><a href="#/equipment/${encodeURIComponent(u.equipment_id)}">${esc(u.equipment_id)}</a></b> ${esc(u.category)}<br>`
        + `${esc(u.address)}<br>${esc(u.owner_name || u.owner_id)}<br>`
        + `risk: ${esc(u.risk_colour || "not graded")} (${num(u.risk_score)})<br>`
        + `open alarms: ${u.open_alarms}${u.worst_open_severity ? ` (worst ${esc(u.worst_open_severity)})` : ""}`);
      marker.addTo(unitLayer);
      bounds.push([u.lat, u.lon]);
    }
    const legend = $("map-legend");
    legend.innerHTML = `<h3>Equipment by risk</h3>`
      + COLOURS.map((c) => `<div data-colour="${c}"><span class="dot ${c}"></span>${c}<b data-count="${c}">${counts[c]}</b></div>`).join("")
      + `<div><span class="dot alarm"></span>with open alarms<b data-count="alarm">${counts.alarm}</b></div>`
      + `<div class="muted">on the map<b data-count="placed">${counts.placed}</b></div>`
      + `<div class="muted">no position<b data-count="unplaced">${counts.unplaced}</b></div>`;
    legend.dataset.rendered = "1";
    if (!map._vigilFitted) {
      const target = bounds.length ? L.latLngBounds(bounds).pad(0.3) : outlineLayer.getBounds();
      if (target.isValid()) map.fitBounds(target);
      map._vigilFitted = true;
    }
    setTimeout(() => map.invalidateSize(), 0);
  }

  // ---------- charts ----------
  function chartWidth(el) {
    return Math.max(280, el.clientWidth - 4);
  }

  function lineChart(el, title, xs, series, opts = {}) {
    el.innerHTML = "";
    if (!xs.length || !window.uPlot) {
      el.innerHTML = `<p class="muted">${esc(title)}: no data in this period.</p>`;
      return;
    }
    const data = [xs.map((t) => t / 1000), ...series.map((s) => s.values)];
    const chart = new uPlot({
      title,
      width: chartWidth(el),
      height: 180,
      scales: { x: { time: true }, y: series.some((s) => s.bars) ? { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } : {} },
      series: [{}, ...series.map((s) => ({
        label: s.label,
        stroke: s.colour,
        width: 2,
        fill: s.fill,
        paths: s.bars ? uPlot.paths.bars({ size: [0.6, 30] }) : s.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
        points: { show: s.points || xs.length < 40 },
        spanGaps: true,
      }))],
      axes: [{}, { size: 50 }],
      ...opts,
    }, data, el);
    el.dataset.chart = "1";
    return chart;
  }

  function barChart(el, title, labels, values, colour) {
    el.innerHTML = "";
    if (!labels.length || !window.uPlot) {
      el.innerHTML = `<p class="muted">${esc(title)}: nothing to show.</p>`;
      return;
    }
    const xs = labels.map((_, i) => i);
    new uPlot({
      width: chartWidth(el),
      height: 220,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
      series: [{}, { label: title, stroke: colour, fill: colour, paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
      axes: [
        { splits: () => xs, values: (u, splits) => splits.map((i) => labels[i] ?? ""), gap: 4 },
        { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
      ],
      legend: { show: false },
    }, [xs, values], el);
    el.dataset.chart = "1";
  }

  // Door-open periods from consecutive samples: start and length in seconds.
  function doorOpenings(readings) {
    const starts = [];
    const lengths = [];
    let openedAt = null;
    for (const r of readings) {
      if (r.door !== "closed" && openedAt == null) openedAt = r.ts;
      if (r.door === "closed" && openedAt != null) {
        starts.push(openedAt);
        lengths.push((r.ts - openedAt) / 1000);
        openedAt = null;
      }
    }
    return { starts, lengths };
  }

  // ---------- equipment page ----------
  async function renderEquipment(id) {
    const root = $("equipment");
    root.innerHTML = `<p class="muted">Loading ${esc(id)}…</p>`;
    if (!state.units.has(id)) await loadUnits();
    const unit = state.units.get(id);
    if (!unit) {
      root.innerHTML = `<p class="error">No equipment ${esc(id)} in your view.</p>`;
      return;
    }
    const quiet = (p) => p.catch((e) => ({ error: e.message }));
    const isEquipment = unit.kind === "equipment";
    const [status, risk, history, readings] = await Promise.all([
      isEquipment ? quiet(api(`/equipment/${encodeURIComponent(id)}/status`)) : null,
      isEquipment ? quiet(api(`/equipment/${encodeURIComponent(id)}/risk`)) : null,
      quiet(api(`/alarms?equipment_id=${encodeURIComponent(id)}&limit=50`)),
      quiet(api(`/equipment/${encodeURIComponent(id)}/readings?minutes=60&limit=2000`)),
    ]);
    if (state.view !== "equipment") return;
    const latest = status && status.latest_reading ? status.latest_reading : null;
    const latestRows = latest
      ? Object.entries(latest)
        .filter(([k]) => !["device_id", "equipment_id", "category", "owner_id", "region", "extra", "table", "received_at"].includes(k))
        .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "object" ? JSON.stringify(v) : v)}</td></tr>`).join("")
      : "";
    const inspection = status && status.inspection;
    const riskHtml = risk && !risk.error
      ? `<p><span class="colour ${esc(risk.colour)}" data-risk-colour="${esc(risk.colour)}">${esc(risk.colour)}</span> score <b data-risk-score>${num(risk.score)}</b></p>
         <table class="kv">${["open_critical", "inspection_overdue", "maintenance_overdue", "uncertified", "repeat_faults", "critical_alarms", "slow_responses"]
          .map((k) => `<tr><td>${k.replace(/_/g, " ")}</td><td class="num" data-factor="${k}">${esc(risk[k])}</td></tr>`).join("")}</table>`
      : `<p class="muted">${esc(risk && risk.error ? risk.error : "Filling stations are not graded.")}</p>`;
    const alarms = history && history.alarms ? history.alarms : [];
    root.innerHTML = `
      <div class="eq-head">
        <h2>${esc(unit.equipment_id)}</h2>
        <span>${esc(unit.category)}</span>
        ${unit.reg_code ? `<span class="muted">reg. ${esc(unit.reg_code)}</span>` : ""}
        <span>${esc(unit.address)} · ${esc(regionName(unit.region))}</span>
        <span>${esc(unit.owner_name || unit.owner_id)}</span>
        <span class="muted">${unit.online ? "online" : unit.devices ? "offline" : "no device"}${unit.last_heard ? `, last heard ${fmtTime(unit.last_heard)}` : ""}</span>
      </div>
      <div class="panel"><h3>Recent readings (60 min)</h3><div id="charts" class="charts"></div></div>
      <div class="grid3">
        <div class="panel"><h3>Risk grade</h3>${riskHtml}</div>
        <div class="panel"><h3>Inspection and maintenance</h3>
          <table class="kv">
            <tr><td>status</td><td>${esc(unit.status)}</td></tr>
            <tr><td>next inspection</td><td class="${unit.inspection_overdue ? "overdue" : ""}" data-inspection>${esc(unit.next_inspection || "–")}${inspection ? ` (${inspection.overdue ? `${-inspection.days_left} days overdue` : `in ${inspection.days_left} days`})` : ""}</td></tr>
            <tr><td>last maintenance</td><td>${esc(unit.last_maintenance || "–")}</td></tr>
            <tr><td>open alarms</td><td>${unit.open_alarms}</td></tr>
          </table></div>
        <div class="panel"><h3>Latest status</h3>${latestRows ? `<table class="kv" id="latest">${latestRows}</table>` : `<p class="muted">No reading yet.</p>`}</div>
      </div>
      <div class="panel"><h3>Alarm history</h3>
        <table id="history"><thead><tr><th>Raised</th><th>Rule</th><th>Severity</th><th>State</th><th>Cleared</th><th>Acknowledged by</th><th>Note</th></tr></thead>
        <tbody>${alarms.map((a) => `<tr data-alarm-id="${esc(a.alarm_id)}"><td>${fmtTime(a.raised_at)}</td><td>${esc(a.rule)}</td><td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td>${esc(a.state)}</td><td>${fmtTime(a.cleared_at)}</td><td>${esc(a.acknowledged_by || "")}</td><td>${esc(a.note || "")}</td></tr>`).join("")}</tbody></table>
        ${alarms.length ? "" : `<p class="muted">No alarms recorded.</p>`}
      </div>`;
    const charts = $("charts");
    const rows = readings && readings.readings ? readings.readings : [];
    const xs = rows.map((r) => r.ts);
    const col = (k) => rows.map((r) => (r[k] == null ? null : Number(r[k])));
    const box = () => {
      const d = document.createElement("div");
      d.className = "chart";
      charts.appendChild(d);
      return d;
    };
    if (readings && readings.error) {
      charts.innerHTML = `<p class="error">${esc(readings.error)}</p>`;
    } else if (readings.table === "elevator_readings") {
      lineChart(box(), "Speed (m/s)", xs, [{ label: "speed", values: col("speed_mps"), colour: "#1f5fa8" }]);
      lineChart(box(), "Floor", xs, [{ label: "floor", values: col("floor"), colour: "#495057", stepped: true }]);
      const doors = doorOpenings(rows);
      lineChart(box(), "Door open time (s)", doors.starts, [{ label: "door open", values: doors.lengths, colour: "#f08c00", fill: "#f08c0088", bars: true }]);
      lineChart(box(), "Load (%)", xs, [{ label: "load", values: col("load_pct"), colour: "#2f9e44" }]);
    } else if (readings.table === "ride_readings") {
      lineChart(box(), "Speed (m/s)", xs, [{ label: "speed", values: col("speed_mps"), colour: "#1f5fa8" }]);
      lineChart(box(), "Vibration (mm/s RMS)", xs, [{ label: "vibration", values: col("vibration_mm_s"), colour: "#d6332b" }]);
      lineChart(box(), "Wind (m/s)", xs, [{ label: "wind", values: col("wind_mps"), colour: "#5c7cfa" }]);
    } else if (readings.table === "filling_records") {
      lineChart(box(), "Fill weight (kg)", xs, [
        { label: "net", values: col("net_kg"), colour: "#1f5fa8", points: true },
        { label: "tare", values: col("tare_kg"), colour: "#adb5bd", points: true },
      ]);
    } else {
      charts.innerHTML = `<p class="muted">This category sends no telemetry.</p>`;
    }
    root.dataset.rendered = id;
  }

  // ---------- statistics ----------
  async function renderStats() {
    const root = $("stats");
    root.innerHTML = `<p class="muted">Loading…</p>`;
    let s;
    try {
      s = await api("/stats");
    } catch (e) {
      root.innerHTML = `<p class="error">${esc(e.message)}</p>`;
      return;
    }
    if (state.view !== "stats") return;
    const t = s.totals;
    const card = (key, label, value, sub) =>
      `<div class="card" data-stat="${key}"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
    const categories = Object.entries(s.by_category);
    const classes = Object.entries(s.owner_classes);
    const level = { county: "County", city: "City", province: "Province" }[s.ranking.level];
    root.innerHTML = `
      <h2>Region statistics <span class="muted">${esc(state.me.regions.map(regionName).join(", ") || (state.me.owner_id ? "own equipment" : "all regions"))}</span></h2>
      <div class="cards">
        ${card("units", "Units supervised", `<span data-value>${t.units}</span>`, "equipment in use or stopped, and filling stations")}
        ${card("online", "Online rate", pct(t.online_rate), `<span data-value>${t.online}</span> of <span data-of>${t.connected}</span> connected units`)}
        ${card("overdue", "Inspection overdue", pct(t.inspection_overdue_rate), `<span data-value>${t.inspection_overdue}</span> of <span data-of>${t.in_use}</span> in use`)}
        ${card("open", "Open alarms per 1,000 units", num(t.open_alarms_per_1000), `<span data-value>${t.open_alarms}</span> open now`)}
        ${card("alarms", `Alarms per 1,000 units (${s.alarm_window_days} d)`, num(t.alarms_per_1000), `<span data-value>${t.alarms}</span> raised`)}
      </div>
      <div class="grid2">
        <div class="panel"><h3>Equipment by category</h3><div id="chart-categories" class="chart"></div>
          <table id="by-category"><tbody>${categories.map(([c, n]) => `<tr data-category="${esc(c)}"><td>${esc(c)}</td><td class="num">${n}</td></tr>`).join("")}</tbody></table></div>
        <div class="panel"><h3>Owners by class</h3><div id="chart-classes" class="chart"></div>
          <table id="by-class"><tbody>${classes.map(([c, n]) => `<tr data-class="${esc(c)}"><td>class ${esc(c)}</td><td class="num">${n}</td></tr>`).join("")}</tbody></table></div>
      </div>
      <div class="panel"><h3>${level} ranking <span class="muted">(most alarms per 1,000 units first)</span></h3>
        <table id="ranking"><thead><tr><th>#</th><th>${level}</th><th class="num">Units</th><th class="num">Online rate</th><th class="num">Inspection overdue</th><th class="num">Open alarms</th><th class="num">Alarms (${s.alarm_window_days} d)</th><th class="num">per 1,000 units</th></tr></thead>
        <tbody>${s.ranking.rows.map((r, i) => `<tr data-region="${esc(r.region)}"><td>${i + 1}</td><td>${esc(regionName(r.region))} <span class="muted">${esc(r.region)}</span></td><td class="num" data-units>${r.units}</td><td class="num">${pct(r.online_rate)}</td><td class="num">${pct(r.inspection_overdue_rate)}</td><td class="num">${r.open_alarms}</td><td class="num">${r.alarms}</td><td class="num">${num(r.alarms_per_1000)}</td></tr>`).join("")}</tbody></table></div>
      <div class="panel"><h3>Owners most at risk</h3>
        <table id="owners"><thead><tr><th>Owner</th><th>Class</th><th class="num">Equipment</th><th class="num">Red</th><th class="num">Orange</th><th class="num">Yellow</th><th class="num">Mean score</th></tr></thead>
        <tbody>${s.owners.map((o) => `<tr><td>${esc(o.name)}</td><td><b>${esc(o.class)}</b></td><td class="num">${o.equipment}</td><td class="num">${o.red}</td><td class="num">${o.orange}</td><td class="num">${o.yellow}</td><td class="num">${num(o.mean_score)}</td></tr>`).join("")}</tbody></table></div>`;
    barChart($("chart-categories"), "units", categories.map(([c]) => c.replace(/_/g, " ")), categories.map(([, n]) => n), "#1f5fa8");
    barChart($("chart-classes"), "owners", classes.map(([c]) => c), classes.map(([, n]) => n), "#f08c00");
    root.dataset.rendered = String(s.generated_at);
  }

  // ---------- views ----------
  function route() {
    if (!state.me) return;
    const hash = location.hash || "#/board";
    const [, view, arg] = hash.match(/^#\/([a-z]+)(?:\/(.+))?$/) || [null, "board"];
    state.view = ["board", "map", "equipment", "stats"].includes(view) ? view : "board";
    for (const v of ["board", "map", "equipment", "stats"]) $("view-" + v).hidden = v !== state.view;
    for (const a of document.querySelectorAll(".top nav a")) a.classList.toggle("active", a.dataset.view === state.view);
    if (state.view === "board") renderBoard();
    if (state.view === "map") loadUnits().then(renderMap);
    if (state.view === "equipment") renderEquipment(decodeURIComponent(arg || ""));
    if (state.view === "stats") renderStats();
  }

  // ---------- start ----------
  async function start() {
    try {
      state.config = await (await fetch("/console/config.json")).json();
    } catch (_) { /* defaults */ }
    await loadOutline();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      audioContext(); // a click is what lets a page make sound later
      const token = $("token").value.trim();
      $("token").value = "";
      if (token) signIn(token);
    });
    $("logout").addEventListener("click", () => sessionEnded(""));
    $("banner").addEventListener("click", () => {
      $("banner").hidden = true;
      document.title = "Vigil console";
    });
    window.addEventListener("hashchange", route);
    if (state.token) await signIn(state.token);
    else showLogin("");
  }

  start();
})();
