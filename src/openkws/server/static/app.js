// openkws web demo: enroll/delete keywords and change their sensitivity and proxy (REST), stream the
// microphone as PCM16 over the websocket protocol v1 (docs/SERVICE.md), upload a file and plot every
// keyword's score over time (POST /v1/detect?trace=true), show detections, a level/score meter and
// this replica's metrics.
// Plain ES module, no dependencies. URLs are relative, so the page also works behind a path prefix.
// With OPENKWS_AUTH=on, an API key typed into the page is kept in sessionStorage (this tab only, gone
// when it closes; never localStorage) and sent as `Authorization: Bearer` on /v1 calls and as the
// `bearer.<key>` websocket subprotocol (docs/SECURITY.md).

const PROTOCOL_VERSION = 1;
const CHUNK_SECONDS = 0.05; // audio per websocket frame
const METRICS_EVERY_MS = 2000;
const READY_EVERY_MS = 5000;
const MAX_DETECTIONS_SHOWN = 200;
const LEVEL_FLOOR_DB = -60;
const SCORE_DECAY_PER_S = 0.6;
const API_KEY_STORAGE = "openkws.apiKey"; // sessionStorage only
const WS_SUBPROTOCOL = "openkws.v1";
const AUTH_HINT = "This service needs an API key: paste one into the API key field at the top " +
  "(`openkws keys create --tenant T --scope admin`; a stream key can stream but not enroll).";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

// ------------------------------------------------------------------------------------- API key
function apiKey() {
  try {
    return sessionStorage.getItem(API_KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled: no key
  }
}

function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(API_KEY_STORAGE, key);
    else sessionStorage.removeItem(API_KEY_STORAGE);
  } catch { /* storage disabled: the key is not kept */ }
  showKeyState();
}

function showKeyState() {
  const key = apiKey();
  $("api-key").value = key;
  $("key-state").textContent = key ? "key set for this tab" : "no key";
  $("key-form").dataset.state = key ? "set" : "none";
}

async function useKey(ev) {
  ev.preventDefault();
  setApiKey($("api-key").value.trim());
  await refreshKeywords();
}

async function forgetKey() {
  setApiKey("");
  await refreshKeywords();
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  const key = apiKey();
  if (key) init.headers.authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  let data = null;
  try { data = await r.json(); } catch { /* empty or non-JSON body */ }
  if (!r.ok) {
    let msg = data && data.error ? data.error.message : `${method} ${path}: HTTP ${r.status}`;
    if (r.status === 401 || r.status === 403) msg += ` — ${AUTH_HINT}`;
    const err = new Error(msg);
    err.status = r.status;
    err.code = data && data.error ? data.error.code : undefined;
    throw err;
  }
  return data;
}

function wsUrl(path) {
  const u = new URL(path, window.location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

function fmt(n, digits = 2) {
  return Number.isFinite(n) ? n.toFixed(digits) : "—";
}

function showMessage(kind, text, items) {
  const box = el("div", { class: `msg ${kind}`, text });
  if (items && items.length) {
    const ul = el("ul");
    for (const it of items) ul.append(el("li", { text: it }));
    box.append(ul);
  }
  $("kw-messages").prepend(box);
  while ($("kw-messages").children.length > 4) $("kw-messages").lastChild.remove();
  return box;
}

// --------------------------------------------------------------------------------------- status
async function refreshReady() {
  const status = $("status");
  try {
    const r = await fetch("readyz");
    const d = await r.json();
    if (r.ok) {
      status.dataset.state = "ready";
      const fallback = d.device && d.device.fallback ? " (CUDA fallback)" : "";
      $("status-text").textContent =
        `ready · ${d.model_version} · ${d.backend.onnx}${fallback}/${d.backend.index} · ${d.keywords} keyword(s)`;
      status.title = (d.device && d.device.warning) || "";
    } else {
      status.dataset.state = "starting";
      $("status-text").textContent = d.error ? d.error.message : `HTTP ${r.status}`;
    }
  } catch (e) {
    status.dataset.state = "error";
    $("status-text").textContent = "service unreachable";
  }
}

// ------------------------------------------------------------------------------------- keywords
const keywordText = new Map(); // id -> text, for near-miss and detection display

// The threshold, with the expected false alarms per hour where the server reports them.
function thresholdText(kw) {
  const fa = kw.expected_fa_per_hour;
  return typeof fa === "number" ? `${fmt(kw.threshold)} (≈${fmt(fa, 1)} FA/h)` : fmt(kw.threshold);
}

async function refreshKeywords(freshId) {
  let page;
  try {
    page = await api("GET", "v1/keywords?limit=1000");
  } catch (e) {
    showMessage("error", `Could not list keywords: ${e.message}`);
    return;
  }
  const tbody = $("kw-list");
  tbody.replaceChildren();
  keywordText.clear();
  for (const kw of page.items) {
    keywordText.set(kw.id, kw.text);
    const del = el("button", { type: "button", class: "danger kw-delete", title: `delete “${kw.text}”`, text: "✕" });
    del.setAttribute("aria-label", `delete ${kw.text}`);
    del.addEventListener("click", () => deleteKeyword(kw));
    const tr = el("tr", { "data-keyword-id": String(kw.id), "data-text": kw.text },
      el("td", { class: "kw-text", text: kw.text }),
      el("td", { class: "phon", text: kw.phonemes.join(" ") }),
      el("td", { class: "num", text: fmt(kw.threshold),
        title: kw.expected_fa_per_hour == null ? "" : `about ${fmt(kw.expected_fa_per_hour, 2)} false alarms per hour expected` },
        ...(kw.expected_fa_per_hour == null ? [] : [el("small", { text: ` · ${fmt(kw.expected_fa_per_hour, 2)} FA/h` })])),
      el("td", { class: "num" }, sensitivityInput(kw)),
      el("td", {}, proxySelect(kw)),
      el("td", { class: "num" }, del));
    if (kw.id === freshId) tr.classList.add("fresh");
    tbody.append(tr);
  }
  $("kw-empty").hidden = page.items.length > 0;
  const more = $("kw-more");
  more.hidden = page.total <= page.items.length;
  more.textContent = `Showing ${page.items.length} of ${page.total} keywords.`;
}

async function enroll(ev) {
  ev.preventDefault();
  const text = $("kw-text").value.trim();
  const thr = $("kw-threshold").value.trim();
  if (!text) return;
  const body = { text, proxy: $("kw-proxy").value };
  if (thr !== "") body.threshold = Number(thr);
  $("kw-enroll").disabled = true;
  try {
    const kw = await api("POST", "v1/keywords", body);
    const what = kw.created ? "Enrolled" : "Already enrolled";
    if (kw.confusable_with && kw.confusable_with.length) {
      const items = kw.confusable_with.map((c) =>
        `“${c.text}” (id ${c.id}): cosine ${fmt(c.cosine)}, phoneme distance ${fmt(c.phoneme_distance)}, ${c.reason.replaceAll("_", " ")}`);
      const box = showMessage("warn",
        `${what} “${kw.text}” — it may be confused with ${items.length} enrolled keyword(s); ` +
        "one may fire on the other. Consider a longer phrase or a higher threshold.", items);
      box.classList.add("confusable");
    } else {
      showMessage("info", `${what} “${kw.text}” (${kw.phonemes.join(" ")}), threshold ${thresholdText(kw)}.`);
    }
    if (kw.guessed_words && kw.guessed_words.length) {
      showMessage("warn", `The pronunciation of ${kw.guessed_words.map((w) => `“${w}”`).join(", ")} was guessed ` +
        `(${kw.phonemes.join(" ")}); if it is wrong, enroll again with a phonemes override (API or CLI --phonemes).`);
    }
    if (kw.note) showMessage("warn", kw.note);
    if (kw.warnings && kw.warnings.length) showMessage("warn", `Advice for “${kw.text}”:`, kw.warnings);
    $("kw-text").value = "";
    await refreshKeywords(kw.id);
    refreshReady();
  } catch (e) {
    showMessage("error", e.message);
  } finally {
    $("kw-enroll").disabled = false;
  }
}

async function deleteKeyword(kw) {
  try {
    await api("DELETE", `v1/keywords/${kw.id}`);
    showMessage("info", `Deleted “${kw.text}”.`);
  } catch (e) {
    showMessage("error", e.message);
  }
  await refreshKeywords();
  refreshReady();
}

// Sensitivity: the false alarms per hour to expect; the server turns it into a threshold (PATCH).
function sensitivityInput(kw) {
  const input = el("input", {
    type: "number", class: "sens", min: "0.01", max: "3600", step: "any",
    value: kw.expected_fa_per_hour == null ? "" : String(Number(kw.expected_fa_per_hour.toPrecision(2))),
    title: `false alarms per hour to expect for “${kw.text}”; Enter sets the threshold from it`,
  });
  input.setAttribute("aria-label", `sensitivity of ${kw.text} in false alarms per hour`);
  input.addEventListener("change", () => {
    const fa = Number(input.value);
    if (input.value.trim() === "" || !(fa > 0)) { // cleared or nonsense: say what is accepted, change nothing
      showMessage("error", `Sensitivity of “${kw.text}”: give the false alarms per hour to expect, a number in (0, 3600].`);
      return;
    }
    setSensitivity(kw, fa);
  });
  return input;
}

async function setSensitivity(kw, fa) {
  try {
    const out = await api("PATCH", `v1/keywords/${kw.id}`, { target_fa_per_hour: fa });
    showMessage("info", `“${out.text}”: sensitivity ${fmt(fa, 2)} FA/h -> threshold ${thresholdText(out)}.`);
    if (out.warnings && out.warnings.length) showMessage("warn", `Advice for “${out.text}”:`, out.warnings);
  } catch (e) {
    showMessage("error", e.message);
  }
  await refreshKeywords(kw.id);
}

// The proxy cannot be PATCHed: re-enroll the same text, phonemes and metadata with the new proxy,
// at the same sensitivity (the threshold for a given FA/h differs between proxies).
function proxySelect(kw) {
  const sel = el("select", { class: "proxy", title: "text: from the phonemes; tts: from espeak-ng/flite renditions; both" });
  for (const p of ["text", "tts", "both"]) sel.append(el("option", { value: p, text: p, selected: p === kw.proxy }));
  sel.setAttribute("aria-label", `proxy of ${kw.text}`);
  sel.addEventListener("change", () => changeProxy(kw, sel.value));
  return sel;
}

async function changeProxy(kw, proxy) {
  const body = { text: kw.text, proxy, phonemes: kw.phonemes };
  if (kw.metadata) body.metadata = kw.metadata;
  if (typeof kw.expected_fa_per_hour === "number" && kw.expected_fa_per_hour > 0) {
    body.target_fa_per_hour = kw.expected_fa_per_hour;
  } else {
    body.threshold = kw.threshold;
  }
  let fresh = null;
  try {
    await api("DELETE", `v1/keywords/${kw.id}`);
    fresh = await api("POST", "v1/keywords", body);
    showMessage("info", `“${fresh.text}” now uses the ${proxy} proxy (id ${fresh.id}), threshold ${thresholdText(fresh)}.`);
    if (fresh.warnings && fresh.warnings.length) showMessage("warn", `Advice for “${fresh.text}”:`, fresh.warnings);
  } catch (e) {
    showMessage("error", `Changing the proxy of “${kw.text}” failed: ${e.message}`);
  }
  await refreshKeywords(fresh ? fresh.id : undefined);
}

// ----------------------------------------------------------------------------------------- file
const PLOT_COLORS = ["#2463eb", "#e8590c", "#15a34a", "#c2255c", "#7048e8", "#0c8599", "#a07e00", "#495057"];

async function detectFile(ev) {
  ev.preventDefault();
  const file = $("file-input").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  const init = { method: "POST", body: form, headers: {} };
  const key = apiKey();
  if (key) init.headers.authorization = `Bearer ${key}`;
  $("file-detect").disabled = true;
  $("file-status").textContent = `Uploading ${file.name}…`;
  try {
    const r = await fetch("v1/detect?trace=true", init);
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new Error(data && data.error ? data.error.message : `HTTP ${r.status}`);
    showFileResult(file.name, data);
  } catch (e) {
    $("file-status").textContent = `Detection failed: ${e.message}`;
  } finally {
    $("file-detect").disabled = false;
  }
}

function showFileResult(name, res) {
  const list = $("file-detections");
  list.replaceChildren();
  for (const d of res.detections) {
    const li = el("li", { class: "detection", "data-text": d.text, "data-keyword-id": String(d.keyword_id) },
      el("span", { class: "when", text: `${(d.start_ms / 1000).toFixed(2)} s` }),
      el("span", { class: "text", text: d.text }),
      el("span", { class: "score" }, `${fmt(d.score, 3)} `, el("small", { text: `≥ ${fmt(d.threshold)}` })));
    li.dataset.score = String(d.score);
    list.append(li);
  }
  const peaks = res.trace.keywords.map((k) => `${k.text} ${fmt(Math.max(...k.scores.filter((v) => v !== null)), 2)}`);
  $("file-status").textContent = `${name}: ${(res.duration_ms / 1000).toFixed(2)} s at ${res.sample_rate} Hz, ` +
    `${res.detections.length} detection(s). Peak scores: ${peaks.join(", ") || "no keyword scored"}.`;
  drawTrace($("trace-plot"), res);
}

// Scores over time: one line per keyword, its threshold dashed, detections as triangles.
function drawTrace(canvas, res) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const pad = { l: 48, r: 16, t: 14, b: 34 };
  const t = res.trace.times_ms;
  ctx.clearRect(0, 0, W, H);
  canvas.dataset.state = t.length ? "drawn" : "empty";
  canvas.dataset.keywords = String(res.trace.keywords.length);
  if (!t.length) return;
  const tMax = Math.max(t[t.length - 1], res.duration_ms);
  const x = (ms) => pad.l + ((W - pad.l - pad.r) * ms) / tMax;
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - Math.max(0, Math.min(1, v)));
  ctx.font = "13px system-ui, sans-serif";
  ctx.strokeStyle = "#e2e6ec"; ctx.fillStyle = "#6a7483"; ctx.lineWidth = 1;
  for (let v = 0; v <= 1.0001; v += 0.2) {
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(W - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(1), 12, y(v) + 4);
  }
  const step = tMax > 20000 ? 5000 : tMax > 6000 ? 1000 : 500;
  for (let ms = 0; ms <= tMax; ms += step) ctx.fillText(`${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`, x(ms) - 10, H - 12);
  const colorOf = new Map();
  res.trace.keywords.forEach((k, i) => {
    const c = PLOT_COLORS[i % PLOT_COLORS.length];
    colorOf.set(k.id, c);
    ctx.strokeStyle = c; ctx.lineWidth = 2; ctx.setLineDash([]);
    ctx.beginPath();
    let pen = false;
    k.scores.forEach((v, j) => {
      if (v === null) { pen = false; return; }
      if (pen) ctx.lineTo(x(t[j]), y(v)); else ctx.moveTo(x(t[j]), y(v));
      pen = true;
    });
    ctx.stroke();
    ctx.lineWidth = 1.2; ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(pad.l, y(k.threshold)); ctx.lineTo(W - pad.r, y(k.threshold)); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = c;
    ctx.fillText(`${k.text} (threshold ${fmt(k.threshold)})`, pad.l + 10, pad.t + 16 + 17 * i);
  });
  for (const d of res.detections) {
    const c = colorOf.get(d.keyword_id) || "#1c2430";
    const px = x(d.decided_ms), py = y(d.score);
    ctx.fillStyle = c; ctx.strokeStyle = "#1c2430"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(px - 7, py - 13); ctx.lineTo(px + 7, py - 13); ctx.lineTo(px, py - 2); ctx.closePath();
    ctx.fill(); ctx.stroke();
  }
}

// ----------------------------------------------------------------------------------------- live
const live = {
  ws: null, ctx: null, media: null, node: null, rate: 0, ready: false, stopping: false,
  score: 0, scoreThreshold: null, scoreAt: 0, detections: 0,
};

function setLive(running) {
  $("mic-start").disabled = running;
  $("mic-stop").disabled = !running;
  $("debug").disabled = running;
}

function liveStatus(text) {
  $("live-status").textContent = text;
}

function setLevel(rms) {
  const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
  const clamped = Math.max(LEVEL_FLOOR_DB, Math.min(0, db));
  $("level-bar").style.width = `${(100 * (clamped - LEVEL_FLOOR_DB)) / -LEVEL_FLOOR_DB}%`;
  $("level-value").textContent = Number.isFinite(db) ? `${db.toFixed(0)} dBFS` : "−∞ dBFS";
  $("level-meter").setAttribute("aria-valuenow", clamped.toFixed(0));
}

function setScore(score, threshold) {
  live.score = score;
  live.scoreThreshold = threshold;
  live.scoreAt = performance.now();
  drawScore();
}

function drawScore() {
  const age = (performance.now() - live.scoreAt) / 1000;
  const shown = Math.max(0, live.score - SCORE_DECAY_PER_S * Math.max(0, age - 0.3));
  const bar = $("score-bar");
  bar.style.width = `${Math.max(0, Math.min(1, shown)) * 100}%`;
  const over = live.scoreThreshold !== null && shown >= live.scoreThreshold;
  bar.classList.toggle("over", over);
  $("score-value").textContent = live.scoreAt ? fmt(shown) : "—";
  $("score-meter").setAttribute("aria-valuenow", fmt(shown));
  const mark = $("score-threshold");
  if (live.scoreThreshold !== null) {
    mark.hidden = false;
    mark.style.left = `${Math.max(0, Math.min(1, live.scoreThreshold)) * 100}%`;
  }
}

function addDetection(d) {
  live.detections += 1;
  const li = el("li", { class: "detection new", "data-text": d.text, "data-keyword-id": String(d.keyword_id) },
    el("span", { class: "when", text: `${(d.start_ms / 1000).toFixed(2)} s` }),
    el("span", { class: "text", text: d.text }),
    el("span", { class: "score" }, `${fmt(d.score, 3)} `, el("small", { text: `≥ ${fmt(d.threshold)}` })));
  li.dataset.score = String(d.score);
  const list = $("detections");
  list.prepend(li);
  while (list.children.length > MAX_DETECTIONS_SHOWN) list.lastChild.remove();
  $("det-empty").hidden = true;
  setScore(d.score, d.threshold);
}

function onNearMiss(m) {
  if (!m.candidates || !m.candidates.length) return;
  const best = m.candidates.reduce((a, b) => (b.score - b.threshold > a.score - a.threshold ? b : a));
  if (performance.now() - live.scoreAt > 300 || best.score >= live.score) setScore(best.score, best.threshold);
}

function onServerMessage(ev) {
  if (typeof ev.data !== "string") return;
  const m = JSON.parse(ev.data);
  switch (m.type) {
    case "ready":
      live.ready = true;
      liveStatus(`Streaming ${live.rate} Hz PCM16 (session ${m.session_id.slice(0, 8)}, ` +
        `${m.keywords} keyword(s), model ${m.model_version}). Say an enrolled keyword.`);
      break;
    case "detection":
      addDetection(m);
      break;
    case "near_miss":
      onNearMiss(m);
      break;
    case "error":
      liveStatus(`Server closed the stream: ${m.code} — ${m.message}` +
        (m.code === "unauthorized" || m.code === "forbidden" ? ` ${AUTH_HINT}` : ""));
      break;
    case "summary":
      liveStatus(`Stopped: ${(m.audio_ms / 1000).toFixed(1)} s of audio, ${m.detections} detection(s).`);
      break;
    default:
      break;
  }
}

async function startMic() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    liveStatus("The microphone needs a secure context: open this page over https, or from localhost.");
    return;
  }
  setLive(true);
  live.stopping = false;
  live.ready = false;
  try {
    live.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    live.ctx = new AudioContext();
    await live.ctx.audioWorklet.addModule("static/pcm-worklet.js");
    if (live.ctx.state === "suspended") await live.ctx.resume();
  } catch (e) {
    liveStatus(`Microphone unavailable: ${e.message || e}`);
    await teardown();
    return;
  }
  const rate = live.ctx.sampleRate;
  live.rate = rate;
  // Browsers cannot set headers on a websocket: the key travels as a subprotocol, never in the URL.
  const key = apiKey();
  const ws = key ? new WebSocket(wsUrl("v1/stream"), [WS_SUBPROTOCOL, `bearer.${key}`])
    : new WebSocket(wsUrl("v1/stream"));
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "start", version: PROTOCOL_VERSION, sample_rate: rate, encoding: "pcm16le", channels: 1,
      debug: $("debug").checked,
    }));
  };
  ws.onmessage = onServerMessage;
  ws.onclose = (ev) => {
    if (!live.stopping && ev.code !== 1000 && ev.code !== 4401 && ev.code !== 4403) { // 44xx: the error message said why
      liveStatus(`Stream closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).`);
    }
    teardown();
  };
  ws.onerror = () => liveStatus("Websocket error; is the service reachable?");

  const source = live.ctx.createMediaStreamSource(live.media);
  live.node = new AudioWorkletNode(live.ctx, "pcm16-capture", {
    numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
    processorOptions: { chunkSamples: Math.round(rate * CHUNK_SECONDS) },
  });
  live.node.port.onmessage = ({ data }) => {
    setLevel(data.rms);
    if (live.ready && ws.readyState === WebSocket.OPEN && !live.stopping) ws.send(data.pcm);
  };
  source.connect(live.node);
  liveStatus(`Microphone open at ${rate} Hz; connecting…`);
}

async function stopMic() {
  live.stopping = true;
  $("mic-stop").disabled = true;
  const ws = live.ws;
  await stopAudio();
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: "stop", version: PROTOCOL_VERSION })); // server answers summary, closes
    liveStatus("Stopping: waiting for the last events…");
  } else {
    await teardown();
  }
}

async function stopAudio() {
  if (live.node) { live.node.port.onmessage = null; live.node.disconnect(); live.node = null; }
  if (live.media) { for (const t of live.media.getTracks()) t.stop(); live.media = null; }
  if (live.ctx) { const c = live.ctx; live.ctx = null; try { await c.close(); } catch { /* already closed */ } }
  setLevel(0);
}

async function teardown() {
  await stopAudio();
  live.ws = null;
  live.ready = false;
  setLive(false);
}

// -------------------------------------------------------------------------------------- metrics
// Prometheus text format, summed over label sets: {name: total}; histograms give _sum and _count.
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    out.set(m[1], (out.get(m[1]) || 0) + v);
  }
  return out;
}

let previous = null;

function setTile(name, text) {
  const tile = document.querySelector(`.tile[data-metric="${name}"] .v`);
  if (tile) tile.textContent = text;
}

function ratio(cur, prev, num, den) {
  const dn = (cur.get(num) || 0) - ((prev && prev.get(num)) || 0);
  const dd = (cur.get(den) || 0) - ((prev && prev.get(den)) || 0);
  if (prev && dd > 0) return dn / dd; // over the last interval
  const n = cur.get(num);
  const d = cur.get(den);
  return d ? n / d : NaN; // since start
}

async function refreshMetrics() {
  let text;
  try {
    const r = await fetch("metrics");
    if (!r.ok) return;
    text = await r.text();
  } catch {
    return;
  }
  const now = performance.now() / 1000;
  const cur = parseMetrics(text);
  const prev = previous;
  const dt = prev ? now - prev.t : NaN;
  const rate = (name) => (prev && dt > 0 ? ((cur.get(name) || 0) - (prev.m.get(name) || 0)) / dt : NaN);

  setTile("active_streams", fmt(cur.get("openkws_active_streams"), 0));
  setTile("keywords", fmt(cur.get("openkws_enrolled_keywords"), 0));
  setTile("audio_rate", fmt(rate("openkws_audio_seconds_total"), 2));
  setTile("detections", fmt(cur.get("openkws_detections_total") || 0, 0));
  const pm = prev ? prev.m : null;
  const lat = ratio(cur, pm, "openkws_detection_latency_seconds_sum", "openkws_detection_latency_seconds_count");
  setTile("detection_latency", Number.isFinite(lat) ? `${(lat * 1000).toFixed(0)} ms` : "—");
  setTile("batch_size", fmt(ratio(cur, pm, "openkws_inference_batch_size_sum", "openkws_inference_batch_size_count"), 1));
  const bt = ratio(cur, pm, "openkws_inference_batch_seconds_sum", "openkws_inference_batch_seconds_count");
  setTile("batch_latency", Number.isFinite(bt) ? `${(bt * 1000).toFixed(1)} ms` : "—");
  setTile("errors", fmt(cur.get("openkws_errors_total") || 0, 0));
  const cpu = rate("process_cpu_seconds_total");
  setTile("cpu", Number.isFinite(cpu) ? `${(cpu * 100).toFixed(0)} %` : "—");
  const rss = cur.get("process_resident_memory_bytes");
  setTile("memory", rss ? `${(rss / 2 ** 20).toFixed(0)} MiB` : "—");
  previous = { t: now, m: cur };
}

// ------------------------------------------------------------------------------------------ main
function main() {
  $("key-form").addEventListener("submit", useKey);
  $("key-forget").addEventListener("click", forgetKey);
  showKeyState();
  $("kw-form").addEventListener("submit", enroll);
  $("mic-start").addEventListener("click", startMic);
  $("mic-stop").addEventListener("click", stopMic);
  $("file-form").addEventListener("submit", detectFile);
  setLive(false);
  refreshReady();
  refreshKeywords();
  refreshMetrics();
  setInterval(refreshReady, READY_EVERY_MS);
  setInterval(refreshMetrics, METRICS_EVERY_MS);
  setInterval(drawScore, 100);
}

main();
