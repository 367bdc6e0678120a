// A small SVG chart of one series: its history, the forecast median, the band between the
// lowest and highest quantile, and the threshold. Written for this page alone, so the page needs
// no chart library and works offline. Reads the JSON of GET /api/v1/series/{id} as it is.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 720, HEIGHT = 340;
const PAD = { left: 64, right: 16, top: 12, bottom: 28 };

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

// 1234567 -> "1.23M": values of storage series span bytes to petabytes.
function formatValue(v) {
  if (v === null || !Number.isFinite(v)) return "-";
  const a = Math.abs(v);
  const units = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) {
    if (a >= size) return trimZeros((v / size).toPrecision(3)) + unit;
  }
  if (a !== 0 && a < 0.01) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

// "1.50" -> "1.5", "100" stays "100": only zeros after a decimal point go.
function trimZeros(text) {
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function formatTime(seconds, span) {
  const d = new Date(seconds * 1000);
  const hm = d.toISOString().slice(11, 16);
  if (span < 120) return d.toISOString().slice(11, 19);
  return span > 2 * 86400 ? d.toISOString().slice(5, 10) + " " + hm : hm;
}

// Nice tick values covering [lo, hi].
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return out;
}

// "M x y L x y ..." of the finite points; a null value breaks the line.
function linePath(points, x, y) {
  let d = "", pen = false;
  for (const [t, v] of points) {
    if (v === null || !Number.isFinite(v)) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1) + " ";
    pen = true;
  }
  return d.trim();
}

// The band between two paths, closed; steps where either is null are left out.
function bandPath(times, low, high, x, y) {
  const keep = times.map((t, i) => [t, low[i], high[i]])
    .filter(([, l, h]) => l !== null && h !== null && Number.isFinite(l) && Number.isFinite(h));
  if (keep.length < 2) return "";
  const top = keep.map(([t, , h]) => x(t).toFixed(1) + " " + y(h).toFixed(1));
  const bottom = keep.reverse().map(([t, l]) => x(t).toFixed(1) + " " + y(l).toFixed(1));
  return "M" + top.join(" L") + " L" + bottom.join(" L") + " Z";
}

function drawChart(container, s) {
  container.replaceChildren();
  const hist = s.history || { start: s.forecast.origin, step_seconds: s.forecast.step_seconds, values: [] };
  const historyPts = hist.values.map((v, i) => [hist.start + i * hist.step_seconds, v]);
  const quantiles = Object.keys(s.forecast.quantiles).sort((a, b) => Number(a) - Number(b));
  const median = s.forecast.quantiles["0.5"] || s.forecast.quantiles[quantiles[Math.floor(quantiles.length / 2)]];
  const low = s.forecast.quantiles[quantiles[0]];
  const high = s.forecast.quantiles[quantiles[quantiles.length - 1]];
  const step = s.forecast.step_seconds;
  const times = median.map((_, k) => s.forecast.origin + (k + 1) * step);

  const values = [...hist.values, ...low, ...high, ...median].filter((v) => v !== null && Number.isFinite(v));
  if (s.threshold !== null) values.push(s.threshold);
  if (values.length === 0) {
    svgEl("text", { x: 20, y: 40 }, svgEl("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}` }, container))
      .textContent = "no values to draw";
    return;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 1; hi += Math.abs(hi) * 0.05 || 1; }
  const pad = (hi - lo) * 0.06;
  lo -= pad; hi += pad;
  const t0 = historyPts.length ? historyPts[0][0] : s.forecast.origin;
  const t1 = times.length ? times[times.length - 1] : s.forecast.origin + step;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0 || 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - lo) / (hi - lo)) * (HEIGHT - PAD.top - PAD.bottom);

  const svg = svgEl("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, "data-series": s.id }, container);
  const grid = svgEl("g", { class: "grid" }, svg);
  const axis = svgEl("g", { class: "axis" }, svg);
  for (const v of ticks(lo, hi, 5)) {
    svgEl("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }, grid);
    svgEl("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, axis).textContent = formatValue(v);
  }
  const span = t1 - t0;
  for (const t of ticks(t0, t1, 6)) {
    svgEl("text", { x: x(t), y: HEIGHT - 8, "text-anchor": "middle" }, axis).textContent = formatTime(t, span);
  }
  svgEl("path", { class: "band", d: bandPath(times, low, high, x, y) }, svg);
  svgEl("line", { class: "now", x1: x(s.forecast.origin), x2: x(s.forecast.origin), y1: PAD.top,
    y2: HEIGHT - PAD.bottom }, svg);
  svgEl("path", { class: "history", d: linePath(historyPts, x, y) }, svg);
  svgEl("path", { class: "median", d: linePath(times.map((t, k) => [t, median[k]]), x, y) }, svg);
  if (s.threshold !== null) {
    svgEl("line", { class: "threshold", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(s.threshold),
      y2: y(s.threshold) }, svg);
  }
}

window.tsfChart = { drawChart, formatValue };
