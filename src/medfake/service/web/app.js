/* medfake web page: plain JS, no build step, talks only to this server's /v1 API. */
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { models: null, detectRows: [], manip: null };

// ------------------------------------------------------------------ API helpers
const keyInput = $("#api-key");
keyInput.value = sessionStorage.getItem("medfake-key") || "";
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("medfake-key", keyInput.value.trim());
  state.models = null;
  loadModels(true).then((m) => { if (m) say("API key set; models loaded."); });
});

function headers(extra = {}) {
  const k = keyInput.value.trim();
  return k ? { ...extra, "X-API-Key": k } : extra;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  const ctype = res.headers.get("content-type") || "";
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    if (ctype.includes("json")) { try { msg = (await res.json()).detail || msg; } catch (e) { /* keep status */ } }
    throw new Error(msg);
  }
  return ctype.includes("json") ? res.json() : res.blob();
}

function say(msg, isError = false) {
  const s = $("#status");
  s.textContent = msg;
  s.classList.toggle("error", isError);
}

async function pollJob(id, bar, label) {
  for (;;) {
    const j = await api(`/v1/jobs/${id}`);
    bar.value = j.progress || 0;
    label.textContent = `${j.state} ${Math.round((j.progress || 0) * 100)}%`;
    if (j.state === "done") return api(`/v1/jobs/${id}?images=true`);
    if (j.state === "failed" || j.state === "expired") throw new Error(j.error || `job ${j.state}`);
    await new Promise((r) => setTimeout(r, 400));
  }
}

// ------------------------------------------------------------------ tabs (WAI-ARIA tabs pattern)
const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
function selectTab(tab) {
  tabs.forEach((t) => {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  });
  if (tab.id === "tab-models") loadModels();
}
tabs.forEach((t, i) => {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (e) => {
    const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (d) { const n = tabs[(i + d + tabs.length) % tabs.length]; n.focus(); selectTab(n); }
  });
});

// ------------------------------------------------------------------ models / choices
function fillSelect(sel, values, keepFirst = false) {
  const first = keepFirst ? sel.options[0] : null;
  sel.innerHTML = "";
  if (first) sel.appendChild(first);
  values.forEach((v) => { const o = document.createElement("option"); o.value = v.value ?? v; o.textContent = v.text ?? v; sel.appendChild(o); });
}

async function loadModels(force = false) {
  if (state.models && !force) return state.models;
  try {
    state.models = await api("/v1/models");
  } catch (e) { say(`Could not load models: ${e.message}`, true); return null; }
  const m = state.models;
  const mods = Object.keys(m.modalities);
  fillSelect($("#synth-modality"), mods);
  fillSelect($("#manip-modality"), mods, true);
  const gens = m.models.filter((x) => x.kind === "generator").map((x) => ({ value: x.name, text: `${x.name} (${x.version})` }));
  fillSelect($("#synth-model"), gens.length ? gens : [{ value: "", text: "(none installed)" }]);
  fillSelect($("#manip-method"), m.manipulation_methods.map((x) => ({ value: x.name, text: x.diffusion ? `${x.name} (diffusion)` : x.name })));
  updateLabels();
  renderModels(m);
  return m;
}

function updateLabels() {
  if (!state.models) return;
  const mod = $("#synth-modality").value;
  fillSelect($("#synth-label"), [{ value: "", text: "(by prior)" }, ...(state.models.modalities[mod] || [])]);
  const mm = $("#manip-modality").value;
  fillSelect($("#manip-label"), [{ value: "", text: "(any)" }, ...(state.models.modalities[mm] || [])]);
}
$("#synth-modality").addEventListener("change", updateLabels);
$("#manip-modality").addEventListener("change", updateLabels);

function renderModels(m) {
  const box = $("#models-list");
  box.innerHTML = "";
  if (!m.models.length) { box.textContent = "No models installed in the server's models folder."; return; }
  for (const x of m.models) {
    const c = document.createElement("article");
    c.className = "card";
    c.setAttribute("aria-label", `Model ${x.name}`);
    const h = document.createElement("h2"); h.textContent = x.name; c.appendChild(h);
    const dl = document.createElement("dl");
    const rows = [["Kind", x.kind], ["Version", x.version], ["Architecture", x.architecture || "—"],
      ["Modalities", (x.modalities || []).join(", ")],
      ["Metrics", Object.keys(x.metrics || {}).length ? Object.entries(x.metrics).map(([k, v]) => `${k}: ${typeof v === "number" ? v.toFixed(4) : JSON.stringify(v)}`).join("; ") : "—"]];
    for (const [k, v] of rows) { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; dl.append(dt, dd); }
    c.appendChild(dl);
    const det = document.createElement("details"); const sm = document.createElement("summary"); sm.textContent = "Model card";
    const pre = document.createElement("pre"); pre.textContent = JSON.stringify(x.card, null, 2);
    det.append(sm, pre); c.appendChild(det);
    box.appendChild(c);
  }
}

// ------------------------------------------------------------------ Synthesis
$("#synth-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const btn = $("#synth-run"), bar = $("#synth-progress"), lab = $("#synth-state"), zip = $("#synth-zip");
  btn.disabled = true; zip.classList.add("hidden"); bar.value = 0; $("#synth-gallery").innerHTML = "";
  const body = {
    modality: $("#synth-modality").value, label: $("#synth-label").value || null, n: +$("#synth-n").value,
    sampler: $("#synth-sampler").value, steps: $("#synth-steps").value ? +$("#synth-steps").value : null,
    seed: +$("#synth-seed").value, model: $("#synth-model").value || null,
  };
  try {
    const job = await api("/v1/synthesize", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    say(`Synthesis job ${job.job_id} queued.`);
    const done = await pollJob(job.job_id, bar, lab);
    const g = $("#synth-gallery");
    done.images.forEach((im, i) => {
      const f = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${im.png}`; img.alt = `Synthetic ${im.modality} image ${i + 1}, label ${im.label}`;
      const cap = document.createElement("figcaption"); cap.textContent = `${im.label} — ${im.file}`;
      f.append(img, cap); g.appendChild(f);
    });
    const blob = await api(`/v1/jobs/${job.job_id}/result`);
    zip.href = URL.createObjectURL(blob); zip.download = `medfake-synthesis-${job.job_id.slice(0, 8)}.zip`;
    zip.classList.remove("hidden");
    say(`Generated ${done.images.length} image(s).`);
  } catch (err) { lab.textContent = "failed"; say(`Synthesis failed: ${err.message}`, true); }
  btn.disabled = false;
});

// ------------------------------------------------------------------ Manipulation: canvas mask drawing
const canvas = $("#manip-canvas"), overlay = $("#manip-overlay");
const maskCanvas = document.createElement("canvas"); // the mask at the image's natural pixel size
let drag = null;

function toImagePx(ev) {
  // map CSS pixels to image pixels: canvas natural size / its displayed size (works at any zoom)
  const r = overlay.getBoundingClientRect();
  const x = (ev.clientX - r.left) * (overlay.width / r.width);
  const y = (ev.clientY - r.top) * (overlay.height / r.height);
  return { x: Math.max(0, Math.min(overlay.width, x)), y: Math.max(0, Math.min(overlay.height, y)) };
}

function tool() { return document.querySelector('input[name="tool"]:checked').value; }

function paintShape(ctx, a, b, kind) {
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  if (kind === "rect") {
    ctx.rect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x), Math.abs(b.y - a.y));
  } else if (kind === "ellipse") {
    ctx.ellipse((a.x + b.x) / 2, (a.y + b.y) / 2, Math.abs(b.x - a.x) / 2 || 0.5, Math.abs(b.y - a.y) / 2 || 0.5, 0, 0, 2 * Math.PI);
  }
  ctx.fill();
}

function brush(ctx, a, b) {
  ctx.strokeStyle = "#fff"; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.lineWidth = 2 * +$("#manip-brush").value;
  ctx.beginPath(); ctx.moveTo(a.x, a.y); ctx.lineTo(b.x, b.y); ctx.stroke();
}

function redrawOverlay(preview) {
  const o = overlay.getContext("2d");
  o.clearRect(0, 0, overlay.width, overlay.height);
  o.globalAlpha = 0.45;
  o.drawImage(maskCanvas, 0, 0);
  if (preview) paintShape(o, preview.a, preview.b, preview.kind);
  o.globalCompositeOperation = "source-in";
  o.globalAlpha = 0.45; o.fillStyle = "#ff3b30"; o.fillRect(0, 0, overlay.width, overlay.height);
  o.globalCompositeOperation = "source-over"; o.globalAlpha = 1;
}

function maskHasPixels() {
  const d = maskCanvas.getContext("2d").getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
  return false;
}

overlay.addEventListener("pointerdown", (ev) => {
  if (!state.manip) return;
  overlay.setPointerCapture(ev.pointerId);
  const p = toImagePx(ev);
  drag = { a: p, b: p, kind: tool(), last: p };
  if (drag.kind === "free") { brush(maskCanvas.getContext("2d"), p, p); redrawOverlay(); }
});
overlay.addEventListener("pointermove", (ev) => {
  const p = toImagePx(ev);
  $("#manip-coords").textContent = state.manip ? `(${Math.floor(p.x)}, ${Math.floor(p.y)}) px` : "";
  if (!drag) return;
  drag.b = p;
  if (drag.kind === "free") { brush(maskCanvas.getContext("2d"), drag.last, p); drag.last = p; redrawOverlay(); }
  else redrawOverlay(drag);
});
overlay.addEventListener("pointerup", (ev) => {
  if (!drag) return;
  drag.b = toImagePx(ev);
  if (drag.kind !== "free") paintShape(maskCanvas.getContext("2d"), drag.a, drag.b, drag.kind);
  drag = null; redrawOverlay();
  $("#manip-run").disabled = !maskHasPixels();
});
$("#manip-clear").addEventListener("click", () => {
  maskCanvas.getContext("2d").clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  redrawOverlay(); $("#manip-run").disabled = true;
});

function loadImage(src) {
  return new Promise((ok, bad) => { const im = new Image(); im.onload = () => ok(im); im.onerror = bad; im.src = src; });
}

async function showFrame(f, frame) {
  // the server decodes DICOM/NIfTI too; a multi-frame file or a volume shows the frame (slice) asked
  const fd = new FormData(); fd.append("file", f);
  if (frame !== null) fd.append("frame", String(frame));
  try {
    const pv = await api("/v1/preview", { method: "POST", body: fd });
    const im = await loadImage(pv.image);
    for (const c of [canvas, overlay, maskCanvas]) { c.width = pv.width; c.height = pv.height; }
    canvas.getContext("2d").drawImage(im, 0, 0);
    const which = pv.frames > 1 ? `, frame ${pv.frame} of 0–${pv.frames - 1}` : "";
    canvas.setAttribute("aria-label",
      `${pv.filename}${which}, ${pv.width}×${pv.height} pixels; drag to draw the mask`);
    state.manip = { file: f, width: pv.width, height: pv.height, frame: pv.frames > 1 ? pv.frame : null };
    $("#manip-frame-wrap").classList.toggle("hidden", pv.frames < 2);
    Object.assign($("#manip-frame"), { max: String(pv.frames - 1), value: String(pv.frame) });
    $("#manip-frame-count").textContent = pv.frames > 1 ? `of 0–${pv.frames - 1}` : "";
    $("#manip-whole-wrap").classList.toggle("hidden", !pv.whole_object);   // a multi-frame DICOM it can send back whole
    if (!pv.whole_object) $("#manip-whole").checked = false;
    showDepth();
    redrawOverlay();
    $("#manip-run").disabled = true;
    say(`Loaded ${pv.filename}${which} (${pv.width}×${pv.height}). Draw the region to edit.`);
  } catch (e) { say(`Cannot open ${f.name}: ${e.message}`, true); }
}

// a slab (frame ± depth) is edited only into the whole object, so its control shows with "whole object back"
function showDepth() {
  const on = $("#manip-whole").checked && !$("#manip-whole-wrap").classList.contains("hidden");
  $("#manip-depth-wrap").classList.toggle("hidden", !on);
  if (!on) $("#manip-depth").value = "0";
}
$("#manip-whole").addEventListener("change", showDepth);

$("#manip-file").addEventListener("change", () => {
  const f = $("#manip-file").files[0];
  if (f) showFrame(f, null);
});
$("#manip-frame").addEventListener("change", () => {
  const n = parseInt($("#manip-frame").value, 10);
  if (state.manip && Number.isInteger(n) && n >= 0 && n !== state.manip.frame) showFrame(state.manip.file, n);
});

function maskBlob() {
  // binary mask PNG at the image's size: white = edit
  const c = document.createElement("canvas"); c.width = maskCanvas.width; c.height = maskCanvas.height;
  const x = c.getContext("2d");
  x.fillStyle = "#000"; x.fillRect(0, 0, c.width, c.height); x.drawImage(maskCanvas, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) { const v = d.data[i] > 127 ? 255 : 0; d.data[i] = d.data[i + 1] = d.data[i + 2] = v; d.data[i + 3] = 255; }
  x.putImageData(d, 0, 0);
  return new Promise((ok) => c.toBlob(ok, "image/png"));
}

$("#manip-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!state.manip) return;
  const btn = $("#manip-run"), bar = $("#manip-progress"), lab = $("#manip-state");
  btn.disabled = true; bar.value = 0; lab.textContent = "running";
  $("#manip-png").classList.add("hidden"); $("#manip-dcm").classList.add("hidden");
  const fd = new FormData();
  fd.append("image", state.manip.file);
  fd.append("mask", await maskBlob(), "mask.png");
  fd.append("method", $("#manip-method").value);
  if ($("#manip-modality").value) fd.append("modality", $("#manip-modality").value);
  if ($("#manip-label").value) fd.append("label", $("#manip-label").value);
  fd.append("seed", $("#manip-seed").value || "0");
  if (state.manip.frame !== null) fd.append("frame", String(state.manip.frame));   // the frame the mask was drawn on
  if ($("#manip-whole").checked) fd.append("all_frames", "true");
  const depth = parseInt($("#manip-depth").value, 10);
  if ($("#manip-whole").checked && depth > 0) fd.append("depth", String(depth));   // the server bounds it (≤ 16)
  try {
    let r = await api("/v1/manipulate", { method: "POST", body: fd });
    if (r.job_id) {
      const j = await pollJob(r.job_id, bar, lab);
      r = { mask: j.files["mask.png"], result: j.files["result.png"], dicom: j.files["result.dcm"],
        mask_dicom: j.files["mask.dcm"] || null };
    }
    bar.value = 1; lab.textContent = "done";
    $("#manip-mask-out").src = r.mask; $("#manip-result").src = r.result;
    const stem = state.manip.file.name.replace(/\.[^.]*$/, "");
    Object.assign($("#manip-png"), { href: r.result, download: `${stem}_manipulated.png` });
    Object.assign($("#manip-dcm"), { href: r.dicom, download: `${stem}_manipulated.dcm` });
    $("#manip-png").classList.remove("hidden"); $("#manip-dcm").classList.remove("hidden");
    if (r.mask_dicom) Object.assign($("#manip-seg"), { href: r.mask_dicom, download: `${stem}_mask_seg.dcm` });
    $("#manip-seg").classList.toggle("hidden", !r.mask_dicom); // a DICOM SEG where highdicom can describe the image
    say(`Manipulated with ${$("#manip-method").value}.`);
  } catch (err) { lab.textContent = "failed"; say(`Manipulation failed: ${err.message}`, true); }
  btn.disabled = false;
});

// ------------------------------------------------------------------ Detection
const drop = $("#drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => detectFiles(Array.from(e.dataTransfer.files)));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#detect-files").click(); } });
$("#detect-files").addEventListener("change", () => detectFiles(Array.from($("#detect-files").files)));

const fmt = (p) => (p === null || p === undefined ? "—" : p.toFixed(3));

async function detectFiles(files) {
  if (!files.length) return;
  const bar = $("#detect-progress"), lab = $("#detect-state"), tbody = $("#detect-table tbody");
  state.detectRows = []; tbody.innerHTML = ""; $("#detect-csv").disabled = true; renderSeries([]);
  state.selected = null; $("#detect-detail").textContent = "Click a row to inspect it."; // a new batch: no stale detail
  const cv = $("#detect-canvas"); cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
  const chunk = 8;
  for (let i = 0; i < files.length; i += chunk) {
    const fd = new FormData();
    files.slice(i, i + chunk).forEach((f) => fd.append("files", f));
    fd.append("include_image", "true");
    lab.textContent = `${i}/${files.length}`;
    let rows;
    try { rows = (await api("/v1/detect", { method: "POST", body: fd })).results; }
    catch (err) { rows = files.slice(i, i + chunk).map((f) => ({ filename: f.name, verdict: "error", message: err.message })); }
    rows.forEach((r) => addRow(r));
    bar.value = Math.min(1, (i + chunk) / files.length);
  }
  lab.textContent = `${files.length} file(s) done`;
  await renderSeries(state.detectRows);
  $("#detect-csv").disabled = false;
  say(`Checked ${files.length} file(s).`);
}

async function renderSeries(rows) { // one verdict per DICOM series: the server's rule (`medfake detect --summary`)
  const tbody = $("#series-table tbody");
  tbody.innerHTML = "";
  $("#series-block").classList.add("hidden");
  if (!rows.some((r) => r.series_uid)) return;
  const results = rows.map((r) => ({ filename: r.filename, verdict: r.verdict, p_synthetic: r.p_synthetic ?? null,
    p_manipulated: r.p_manipulated ?? null, study_uid: r.study_uid || null, series_uid: r.series_uid || null }));
  let groups;
  try {
    groups = (await api("/v1/summary", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ results, group_by: "series" }) })).groups;
  } catch (err) { say(`Per-series verdicts failed: ${err.message}`, true); return; }
  if (rows !== state.detectRows) return; // a newer batch started meanwhile
  const series = groups.filter((g) => g.group_by === "series");
  $("#series-block").classList.toggle("hidden", series.length === 0);
  for (const g of series) {
    const flagged = g.synthetic + g.manipulated + g.uncertain;
    const tr = document.createElement("tr");
    const shown = g.group.length > 24 ? `…${g.group.slice(-24)}` : g.group;
    [shown, g.files, g.real, flagged, g.verdict].forEach((v, k) => {
      const td = document.createElement("td"); td.textContent = v;
      if (k === 0) td.title = g.group;
      if (k === 4) td.className = `verdict verdict-${g.verdict}`;
      tr.appendChild(td);
    });
    tr.title = [g.message, g.flagged && `flagged: ${g.flagged}`].filter(Boolean).join("\n");
    tbody.appendChild(tr);
  }
}

function addRow(r) {
  const idx = state.detectRows.push(r) - 1;
  const tr = document.createElement("tr");
  tr.tabIndex = 0;
  const cells = [r.filename, r.modality || "—", fmt(r.p_synthetic), fmt(r.p_manipulated), r.verdict];
  cells.forEach((v, k) => { const td = document.createElement("td"); td.textContent = v; if (k === 4) td.className = `verdict verdict-${r.verdict}`; tr.appendChild(td); });
  if (r.verdict === "error") tr.title = r.message || "error";
  else tr.title = [r.note, r.provenance && `declared by the file (not used by the verdict): ${r.provenance}`]
    .filter(Boolean).join("\n");
  tr.addEventListener("click", () => showDetail(idx, tr));
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") showDetail(idx, tr); });
  $("#detect-table tbody").appendChild(tr);
}

function jet(v) { // colormap for the heatmap overlay
  const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3))), g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2))), b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1)));
  return [r * 255, g * 255, b * 255];
}

async function showDetail(idx, tr) {
  document.querySelectorAll("#detect-table tbody tr").forEach((x) => x.removeAttribute("aria-selected"));
  tr.setAttribute("aria-selected", "true");
  const r = state.detectRows[idx];
  state.selected = r;
  const info = $("#detect-detail");
  if (r.verdict === "error") { info.textContent = `${r.filename}: ${r.message}`; return; }
  info.textContent = `${r.filename}: ${r.verdict} (synthetic ${fmt(r.p_synthetic)}, manipulated ${fmt(r.p_manipulated)})`
    + (r.note ? ` — ${r.note}` : "");
  await drawDetail();
}

async function drawDetail() {
  const r = state.selected;
  if (!r || !r.image) return;
  const c = $("#detect-canvas"), x = c.getContext("2d");
  const base = await loadImage(r.image);
  c.width = base.width; c.height = base.height;
  x.drawImage(base, 0, 0);
  const layer = async (src, fn) => {
    const im = await loadImage(src);
    const t = document.createElement("canvas"); t.width = c.width; t.height = c.height;
    const tx = t.getContext("2d"); tx.drawImage(im, 0, 0, c.width, c.height);
    const d = tx.getImageData(0, 0, c.width, c.height);
    for (let i = 0; i < d.data.length; i += 4) fn(d.data, i, d.data[i] / 255);
    tx.putImageData(d, 0, 0); x.drawImage(t, 0, 0);
  };
  if ($("#show-heat").checked && r.heatmap) await layer(r.heatmap, (d, i, v) => { const [R, G, B] = jet(v); d[i] = R; d[i + 1] = G; d[i + 2] = B; d[i + 3] = 110 * v + 20; });
  if ($("#show-mask").checked && r.mask) await layer(r.mask, (d, i, v) => { d[i] = 255; d[i + 1] = 40; d[i + 2] = 40; d[i + 3] = v > 0.5 ? 120 : 0; });
}
$("#show-heat").addEventListener("change", drawDetail);
$("#show-mask").addEventListener("change", drawDetail);

$("#detect-csv").addEventListener("click", () => {
  const q = (s) => `"${String(s ?? "").replace(/"/g, '""')}"`;
  const lines = [["filename", "modality", "p_synthetic", "p_manipulated", "verdict", "message"].join(",")];
  for (const r of state.detectRows) lines.push([q(r.filename), q(r.modality), r.p_synthetic ?? "", r.p_manipulated ?? "", q(r.verdict), q(r.message || r.note)].join(","));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  a.download = "medfake-detections.csv"; document.body.appendChild(a); a.click(); a.remove();
});

// ------------------------------------------------------------------ start
loadModels();
