// The MixPilot page: upload, analysis, A/B comparison, real-time adjustment, export. It uses
// only the public REST API (the same routes as gateway/client.py) and serves everything itself.

import { ApiError, apiKey, download, followJob, getJson, postJson, request, setApiKey, uploadSong } from "./api.js";
import { drawSpectrum, drawWaveform, meter } from "./charts.js";
import { ABPlayer, splice } from "./player.js";

const EDIT = "edit";
const PREVIEW_S = 20;
const SLIDERS = [
  ["eq_low_shelf_gain_db", "Bass"],
  ["eq_mid_gain_db", "Mids"],
  ["eq_high_shelf_gain_db", "Treble"],
  ["comp_threshold_db", "Compressor threshold"],
  ["comp_ratio", "Compressor ratio"],
  ["stereo_width", "Stereo width"],
  ["reverb_mix_pct", "Reverb"],
  ["delay_mix_pct", "Delay"],
];

const $ = (id) => document.getElementById(id);

const state = {
  job: null,
  report: null,
  player: null,
  visuals: new Map(),
  loading: new Map(),
  base: "strategy",
  edits: {},
  previewSeq: 0,
  previews: 0,
  preview: null,
  busy: false,
};
window.mixpilot = { state, get player() { return state.player; } };

function status(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.style.color = isError ? "var(--bad)" : "";
}

function fmtTime(s) {
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

function label(name) {
  if (name === EDIT) return `Your edit (preview, from ${state.base})`;
  const v = state.job && state.job.versions[name];
  return v && v.label ? v.label : name;
}

// -- the key --------------------------------------------------------------------------------

async function checkAccess() {
  try {
    await getJson("/v1/jobs?limit=1");
    $("key-panel").hidden = true;
    status("key-status", "");
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      $("key-panel").hidden = false;
      if (apiKey()) status("key-status", "That API key was refused (unknown or revoked): enter another.", true);
      return false;
    }
    throw error;
  }
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setApiKey($("key-input").value.trim());
  await checkAccess();
});

// -- upload -----------------------------------------------------------------------------------

const drop = $("drop-zone");
drop.addEventListener("click", () => $("file-input").click());
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    $("file-input").click();
  }
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  addFiles([...e.dataTransfer.files]);
});
$("file-input").addEventListener("change", (e) => addFiles([...e.target.files]));

function addFiles(files) {
  for (const file of files) uploadOne(file);
}

function uploadRow(name) {
  const li = document.createElement("li");
  const title = document.createElement("span");
  title.textContent = name;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${name}`);
  const right = document.createElement("span");
  right.className = "state";
  right.textContent = "uploading";
  li.append(title, bar, right);
  $("uploads").appendChild(li);
  return { li, bar, right };
}

async function uploadOne(file) {
  const row = uploadRow(file.name);
  row.li.dataset.state = "uploading";
  try {
    const job = await uploadSong(file, (f) => { row.bar.value = 0.3 * f; });
    row.li.dataset.jobId = job.job_id;
    const done = await followJob(job.job_id, (j) => {
      row.bar.value = 0.3 + 0.7 * j.progress;
      row.right.textContent = j.state;
      row.li.dataset.state = j.state;
    });
    if (done.state !== "done") throw new ApiError(0, done.error ? done.error.code : "failed", done.error ? done.error.message : "the job failed");
    row.bar.value = 1;
    row.right.textContent = "";
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open";
    open.addEventListener("click", () => openJob(job.job_id));
    row.right.appendChild(open);
    row.li.dataset.state = "done";
    if (!state.job) await openJob(job.job_id);
  } catch (error) {
    row.li.dataset.state = "error";
    row.right.textContent = "rejected";
    const msg = document.createElement("span");
    msg.className = "error";
    msg.setAttribute("role", "alert");
    msg.textContent = `${file.name}: ${error.message || error}`;
    row.li.appendChild(msg);
  }
}

// -- a finished job ---------------------------------------------------------------------------

async function openJob(jobId) {
  const [job, report] = await Promise.all([getJson(`/v1/jobs/${jobId}`), getJson(`/v1/jobs/${jobId}/report`)]);
  if (state.player) state.player.pause();
  state.job = job;
  state.report = report;
  state.visuals.clear();
  state.loading.clear();
  state.edits = {};
  state.preview = null;
  state.previews = 0;
  state.base = job.versions.strategy ? "strategy" : Object.keys(job.versions)[0];
  state.player = new ABPlayer(report.input.sample_rate);
  state.player.onChange(() => updatePlayerUi());
  $("job-panel").hidden = false;
  $("job-title").textContent = job.filename || "Song";
  showAnalysis(report);
  fillSelects();
  $("param-version").value = job.versions.ai_enhanced_cnn ? "ai_enhanced_cnn" : state.base;
  buildSliders();
  showParams();
  const b = job.versions.ai_enhanced_cnn ? "ai_enhanced_cnn" : state.base;
  await Promise.all([assign("A", "original"), assign("B", b)]);
  redraw();
}

function fillSelects() {
  const names = Object.keys(state.job.versions);
  for (const id of ["slot-a", "slot-b", "param-version", "export-version", "edit-base"]) {
    const select = $(id);
    const keep = select.value;
    select.innerHTML = "";
    const list = id.startsWith("slot") && state.preview ? [...names, EDIT] : names;
    for (const name of list) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name === EDIT ? label(EDIT) : `${name} — ${label(name)}`;
      select.appendChild(option);
    }
    if (list.includes(keep)) select.value = keep;
  }
  $("edit-base").value = state.base;
  if (state.player) {
    $("slot-a").value = state.player.slots.A || "original";
    if (state.player.slots.B) $("slot-b").value = state.player.slots.B;
  }
}

async function ensureVersion(name) {
  if (name === EDIT || state.player.buffers.has(name)) return;
  if (!state.loading.has(name)) {
    const job = state.job;
    state.loading.set(name, (async () => {
      const response = await request("GET", job.versions[name].url);
      const buffer = await state.player.decode(await response.arrayBuffer());
      if (state.job === job) state.player.setVersion(name, buffer, job.versions[name].loudness_lufs);
    })());
  }
  await state.loading.get(name);
}

async function visualOf(name) {
  const key = name === EDIT ? state.base : name;
  if (!state.visuals.has(key)) state.visuals.set(key, getJson(`/v1/jobs/${state.job.job_id}/outputs/${key}/visual`));
  return state.visuals.get(key);
}

async function assign(slot, name) {
  await ensureVersion(name);
  state.player.setSlot(slot, name);
  $(slot === "A" ? "slot-a" : "slot-b").value = name;
  redraw();
}

$("slot-a").addEventListener("change", (e) => assign("A", e.target.value));
$("slot-b").addEventListener("change", (e) => assign("B", e.target.value));

// -- analysis ----------------------------------------------------------------------------------

function showAnalysis(report) {
  const a = report.analysis;
  const f = a.features || {};
  const pct = (x) => `${Math.round(100 * x)} %`;
  const rows = [
    ["Tempo", `${a.tempo_bpm.toFixed(1)} BPM`, a.tempo_confidence],
    ["Key", a.key, a.key_confidence],
    ["Metre", a.meter || "–", a.meter_confidence],
    ["Genre", genreBars(a.genre_probabilities || {}, a.genre)],
    ["Energy", meter(a.energy, pct(a.energy))],
    ["Valence", meter(a.valence, pct(a.valence))],
    ["Danceability", meter(a.danceability, pct(a.danceability))],
    ["Loudness", `${a.loudness_lufs.toFixed(1)} LUFS · true peak ${a.true_peak_dbtp.toFixed(1)} dBTP`],
    ["Dynamic range", `${(f.loudness_range_lu ?? 0).toFixed(1)} LU loudness range · crest ${a.crest_factor_db.toFixed(1)} dB`],
    ["Stereo width", meter(Math.min(1, a.stereo_width), a.channels === 1 ? "mono" : a.stereo_width.toFixed(2))],
    ["Production", `${a.compression_style} compression · ${a.eq_character} EQ · ${a.reverb_style} reverb`],
    ["Length", `${fmtTime(a.duration_s)} · ${a.sample_rate} Hz · ${a.channels === 1 ? "mono" : "stereo"}`],
  ];
  const dl = $("analysis");
  dl.innerHTML = "";
  for (const [name, value, confidence] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.dataset.field = name.toLowerCase().replace(/ /g, "_");
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value;
    if (confidence !== undefined) {
      const c = meter(confidence, `${pct(confidence)} confident`);
      c.className = "confidence";
      dd.appendChild(c);
    }
    dl.append(dt, dd);
  }
}

function genreBars(probabilities, genre) {
  const box = document.createElement("div");
  box.className = "bars";
  const entries = Object.entries(probabilities).sort((x, y) => y[1] - x[1]);
  if (entries.length === 0) entries.push([genre, 1]);
  for (const [name, p] of entries) {
    const n = document.createElement("span");
    n.textContent = name === genre ? `${name} ✓` : name;
    const bar = meter(p, "");
    const v = document.createElement("span");
    v.textContent = `${Math.round(100 * p)} %`;
    box.append(n, bar, v);
  }
  return box;
}

// -- parameters --------------------------------------------------------------------------------

function showParams() {
  const name = $("param-version").value || state.base;
  const version = state.report.versions[name] || { params: state.job.versions[name].params };
  const strategy = state.report.versions.strategy ? state.report.versions.strategy.params : {};
  const model = version.model || {};
  const table = $("params");
  table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const h of ["Parameter", "Unit", "Rendered", "AI raw", "After musical context", "Strategy", "Why"]) {
    const th = document.createElement("th");
    th.textContent = h;
    th.scope = "col";
    head.appendChild(th);
  }
  const body = table.createTBody();
  const params = version.params || {};
  for (const [param, meta] of Object.entries(state.report.parameters)) {
    const row = body.insertRow();
    const m = model[param];
    const show = (x) => (meta.choices && x !== undefined && x !== null ? meta.choices[Math.round(x)] : fmt(x));
    const cells = [
      param,
      meta.choices ? "" : meta.unit,
      show(params[param]),
      m ? show(m.raw) : "",
      m ? show(m.refined) : "",
      show(strategy[param]),
      m && m.refinement ? m.refinement : "",
    ];
    cells.forEach((text, i) => {
      const td = row.insertCell();
      td.textContent = text;
      if (i >= 2 && i <= 5) td.className = "num";
    });
    if (m && Math.abs(m.raw - m.refined) > 1e-6) row.classList.add("changed");
  }
}

function fmt(x) {
  return x === undefined || x === null ? "" : Number(x).toFixed(Math.abs(x) >= 100 ? 0 : 2);
}

$("param-version").addEventListener("change", showParams);

// -- real-time adjustment ------------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  const params = state.job.versions[state.base].params;
  for (const [name, title] of SLIDERS) {
    const meta = state.report.parameters[name];
    if (!meta) continue;
    const wrap = document.createElement("div");
    wrap.className = "slider";
    const id = `slider-${name}`;
    const lab = document.createElement("label");
    lab.htmlFor = id;
    const text = document.createElement("span");
    text.textContent = title;
    const value = document.createElement("span");
    value.className = "value";
    lab.append(text, value);
    const input = document.createElement("input");
    input.type = "range";
    input.id = id;
    input.dataset.param = name;
    input.min = meta.min;
    input.max = meta.max;
    input.step = (meta.max - meta.min) / 200;
    const current = name in state.edits ? state.edits[name] : params[name];
    input.value = current;
    const show = () => { value.textContent = `${Number(input.value).toFixed(2)} ${meta.unit}`; };
    show();
    input.addEventListener("input", () => {
      show();
      state.edits[name] = Number(input.value);
      schedulePreview();
    });
    wrap.append(lab, input);
    box.appendChild(wrap);
  }
}

$("edit-base").addEventListener("change", (e) => {
  state.base = e.target.value;
  state.edits = {};
  buildSliders();
});

let previewTimer = null;
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(requestPreview, 250);
}

async function requestPreview() {
  const player = state.player;
  const seq = ++state.previewSeq;
  const duration = player.buffers.get(state.base) ? player.buffers.get(state.base).duration : state.report.input.duration_s;
  const start = Math.max(0, Math.min(player.playhead() - 2, duration - 1));
  const length = Math.max(1, Math.min(PREVIEW_S, duration - start));
  status("edit-status", "rendering a preview…");
  try {
    await ensureVersion(state.base);
    const response = await postJson(`/v1/jobs/${state.job.job_id}/renders`, {
      base: state.base,
      params: state.edits,
      preview: { start_s: start, duration_s: length },
    });
    const renderS = Number(response.headers.get("X-MixPilot-Render-S"));
    const startS = Number(response.headers.get("X-MixPilot-Excerpt-Start-S"));
    const durationS = Number(response.headers.get("X-MixPilot-Excerpt-Duration-S"));
    const excerpt = await player.decode(await response.arrayBuffer());
    if (seq !== state.previewSeq) return; // a newer preview is on its way
    const base = player.buffers.get(state.base);
    const first = !state.preview;
    player.setVersion(EDIT, splice(player.ctx, base, excerpt, startS), state.job.versions[state.base].loudness_lufs);
    state.preview = { startS, durationS, seq, renderS };
    state.previews += 1;
    if (first) fillSelects();
    if (player.slots.A !== EDIT && player.slots.B !== EDIT) {
      player.setSlot("B", EDIT);
      $("slot-b").value = EDIT;
      player.hear("B");
    }
    status("edit-status", `preview ${fmtTime(startS)}–${fmtTime(startS + durationS)} rendered in ${renderS.toFixed(2)} s`);
    redraw();
  } catch (error) {
    if (seq === state.previewSeq) status("edit-status", error.message, true);
  }
}

$("render-full").addEventListener("click", async () => {
  const button = $("render-full");
  button.disabled = true;
  status("edit-status", "rendering the whole song…");
  try {
    const response = await postJson(`/v1/jobs/${state.job.job_id}/renders`, { base: state.base, params: state.edits });
    const version = await response.json();
    state.job = await getJson(`/v1/jobs/${state.job.job_id}`);
    state.report = await getJson(`/v1/jobs/${state.job.job_id}/report`);
    fillSelects();
    await assign("B", version.name);
    state.player.hear("B");
    await recordPreference(version.name, [state.base, version.name]);
    status("edit-status", `“${version.label}” is ready as version ${version.name}: compare it, or export it below`);
    $("export-version").value = version.name;
  } catch (error) {
    status("edit-status", error.message, true);
  } finally {
    button.disabled = false;
  }
});

// -- A/B ---------------------------------------------------------------------------------------

async function recordPreference(chosen, compared) {
  const edited = Object.keys(state.edits).length ? state.edits : {};
  const real = (n) => (n === EDIT ? state.base : n);
  await postJson(`/v1/jobs/${state.job.job_id}/preferences`, {
    chosen: real(chosen),
    compared: [...new Set(compared.map(real))],
    edited: compared.includes(EDIT) || chosen.startsWith("user-") ? edited : {},
  });
}

for (const slot of ["A", "B"]) {
  $(`prefer-${slot.toLowerCase()}`).addEventListener("click", async () => {
    const p = state.player;
    try {
      await recordPreference(p.slots[slot], [p.slots.A, p.slots.B]);
      status("prefer-note", `Noted: you prefer ${slot} (${label(p.slots[slot])}).`);
    } catch (error) {
      status("prefer-note", error.message, true);
    }
  });
}

$("play").addEventListener("click", () => state.player && state.player.toggle());
$("switch").addEventListener("click", () => state.player && state.player.switch());
$("match").addEventListener("change", (e) => state.player && state.player.setMatched(e.target.checked));
$("seek").addEventListener("input", (e) => {
  const p = state.player;
  if (p) p.seek((Number(e.target.value) / 1000) * p.duration);
});

document.addEventListener("keydown", (e) => {
  const p = state.player;
  const tag = (e.target.tagName || "").toLowerCase();
  const key = e.key.toLowerCase();
  if (!p || e.ctrlKey || e.metaKey || e.altKey) return;
  // Form fields keep their keys (a slider's arrows, a select's letters); a focused button keeps
  // Space and Enter (they press it) but the shortcuts still work there.
  if (["input", "select", "textarea"].includes(tag) && e.target.type !== "checkbox") return;
  if ((tag === "button" || e.target.type === "checkbox") && (key === " " || key === "enter")) return;
  if (key === " ") { e.preventDefault(); p.toggle(); }
  else if (key === "x") p.switch();
  else if (key === "a") p.hear("A");
  else if (key === "b") p.hear("B");
  else if (key === "l") { $("match").checked = !$("match").checked; p.setMatched($("match").checked); }
  else if (key === "arrowleft") p.seek(p.playhead() - 5);
  else if (key === "arrowright") p.seek(p.playhead() + 5);
});

function updatePlayerUi() {
  const p = state.player;
  $("play").textContent = p.playing ? "Pause" : "Play";
  $("switch").textContent = `Hearing ${p.active}`;
  $("switch").setAttribute("aria-pressed", String(p.active === "B"));
  redraw();
}

async function redraw() {
  const p = state.player;
  if (!p || !state.job) return;
  const playing = p.slots[p.active];
  const [visual, a, b] = await Promise.all([visualOf(playing || "original"), visualOf(p.slots.A || "original"), visualOf(p.slots.B || "original")]);
  $("waveform-caption").textContent = `${p.active}: ${label(playing)}`;
  drawWaveform($("waveform"), visual, { playheadS: p.playhead(), preview: playing === EDIT ? state.preview : null, color: p.active === "A" ? "#1f6feb" : "#d9480f" });
  drawSpectrum($("spectrum"), { A: a, B: b });
}

function tick() {
  const p = state.player;
  if (p && p.duration) {
    const t = p.playhead();
    $("time").textContent = `${fmtTime(t)} / ${fmtTime(p.duration)}`;
    if (document.activeElement !== $("seek")) $("seek").value = String(Math.round((t / p.duration) * 1000));
    if (p.playing) redraw();
  }
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);

// -- export ------------------------------------------------------------------------------------

$("download").addEventListener("click", async () => {
  const version = $("export-version").value;
  const format = $("export-format").value;
  const ext = { wav24: "wav", wav16: "wav", flac: "flac", mp3: "mp3" }[format];
  status("export-status", "preparing…");
  try {
    const stem = (state.job.filename || "mix").replace(/\.[^.]+$/, "");
    await download(`${state.job.versions[version].url}?format=${format}`, `${stem}-${version}.${ext}`);
    status("export-status", "downloaded");
  } catch (error) {
    status("export-status", error.message, true);
  }
});

$("download-zip").addEventListener("click", async () => {
  const format = $("export-format").value;
  status("export-status", "preparing the ZIP…");
  try {
    const stem = (state.job.filename || "mix").replace(/\.[^.]+$/, "");
    await download(`/v1/jobs/${state.job.job_id}/archive?format=${format}`, `${stem}-mixpilot-${format}.zip`);
    status("export-status", "downloaded");
  } catch (error) {
    status("export-status", error.message, true);
  }
});

window.addEventListener("resize", () => redraw());
checkAccess().finally(() => { document.body.dataset.ready = "true"; });
