// Canvas drawings: the waveform with the playhead and the previewed stretch, the spectra of A
// and B over each other. Data come from GET /v1/jobs/{id}/outputs/{v}/visual.

const COLORS = { A: "#1f6feb", B: "#d9480f", grid: "#d7dce2", text: "#5b6673", wave: "#6c7a89", preview: "rgba(217,72,15,0.15)" };

function fit(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || Number(canvas.getAttribute("height")) || 150;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  return { g, width, height };
}

export function drawWaveform(canvas, visual, { playheadS = 0, preview = null, color = COLORS.A } = {}) {
  const { g, width, height } = fit(canvas);
  if (!visual) return;
  const { min, max, rms } = visual.waveform;
  const n = max.length;
  const mid = height / 2;
  const scale = (height / 2) * 0.95;
  if (preview) {
    const x0 = (preview.startS / visual.duration_s) * width;
    const x1 = ((preview.startS + preview.durationS) / visual.duration_s) * width;
    g.fillStyle = COLORS.preview;
    g.fillRect(x0, 0, x1 - x0, height);
  }
  g.fillStyle = COLORS.wave;
  for (let i = 0; i < n; i++) {
    const x = (i / n) * width;
    const w = Math.max(1, width / n);
    g.fillRect(x, mid - max[i] * scale, w, Math.max(1, (max[i] - min[i]) * scale));
  }
  g.fillStyle = color;
  for (let i = 0; i < n; i++) {
    const x = (i / n) * width;
    const w = Math.max(1, width / n);
    g.fillRect(x, mid - rms[i] * scale, w, Math.max(1, 2 * rms[i] * scale));
  }
  const px = (playheadS / visual.duration_s) * width;
  g.fillStyle = "#000";
  g.fillRect(px, 0, 2, height);
}

export function drawSpectrum(canvas, spectra) {
  const { g, width, height } = fit(canvas);
  const left = 34, bottom = 16;
  const top = -10, floor = -90; // dB shown
  const fx = (hz) => left + ((Math.log10(hz) - Math.log10(20)) / (Math.log10(20000) - Math.log10(20))) * (width - left);
  const fy = (db) => ((top - Math.max(db, floor)) / (top - floor)) * (height - bottom);
  g.strokeStyle = COLORS.grid;
  g.fillStyle = COLORS.text;
  g.font = "10px system-ui, sans-serif";
  g.lineWidth = 1;
  for (const hz of [50, 100, 200, 500, 1000, 2000, 5000, 10000]) {
    g.beginPath(); g.moveTo(fx(hz), 0); g.lineTo(fx(hz), height - bottom); g.stroke();
    g.fillText(hz >= 1000 ? `${hz / 1000}k` : `${hz}`, fx(hz) - 8, height - 3);
  }
  for (let db = top; db >= floor; db -= 20) {
    g.beginPath(); g.moveTo(left, fy(db)); g.lineTo(width, fy(db)); g.stroke();
    g.fillText(`${db}`, 2, fy(db) + 3);
  }
  for (const [slot, visual] of Object.entries(spectra)) {
    if (!visual) continue;
    const { hz, db } = visual.spectrum;
    g.strokeStyle = COLORS[slot];
    g.lineWidth = 2;
    g.beginPath();
    hz.forEach((f, i) => (i ? g.lineTo(fx(f), fy(db[i])) : g.moveTo(fx(f), fy(db[i]))));
    g.stroke();
  }
}

// A 0..1 value as a small bar with its number.
export function meter(value, text) {
  const span = document.createElement("span");
  const bar = document.createElement("span");
  bar.className = "meter";
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "1");
  bar.setAttribute("aria-valuenow", String(value));
  const fill = document.createElement("span");
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, value)) * 100)}%`;
  bar.appendChild(fill);
  span.append(bar, text);
  return span;
}
