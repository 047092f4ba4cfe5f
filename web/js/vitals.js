// Vital signs as people read them: names and units for the LOINC codes the gateway accepts
// (gateway/vitals/codes.py), series per code, and small inline SVG charts. Readings arrive
// in canonical units: {code, unit, value, time} or, for blood pressure, {code: "85354-9",
// time, components: [{code: "8480-6", value}, {code: "8462-4", value}]}.

import { el } from "./dom.js";

export const BP = "85354-9";
const SYSTOLIC = "8480-6";
const DIASTOLIC = "8462-4";

/** code -> {name, unit shown, decimals}; in the order a clinician scans them. */
export const CODES = {
  "8867-4": { name: "Heart rate", unit: "/min", digits: 0 },
  [BP]: { name: "Blood pressure", unit: "mmHg", digits: 0 },
  "59408-5": { name: "Oxygen saturation (SpO₂)", unit: "%", digits: 1 },
  "2708-6": { name: "Oxygen saturation, arterial", unit: "%", digits: 1 },
  "9279-1": { name: "Respiratory rate", unit: "/min", digits: 0 },
  "8310-5": { name: "Body temperature", unit: "°C", digits: 1 },
  "29463-7": { name: "Body weight", unit: "kg", digits: 1 },
  "15074-8": { name: "Glucose", unit: "mmol/L", digits: 1 },
};

const ORDER = Object.keys(CODES);
const POINTS = 60; // per code: what a sparkline shows

export const nameOf = (code) => CODES[code]?.name ?? `LOINC ${code}`;

function num(v, digits) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "?";
}

/** A point of one reading: {t (ms), v} or, for blood pressure, {t, v: systolic, w: diastolic}. */
function pointOf(r) {
  const t = Date.parse(r.time);
  if (!Number.isFinite(t)) return null;
  if (r.code === BP) {
    const by = Object.fromEntries((r.components ?? []).map((c) => [c.code, c.value]));
    if (typeof by[SYSTOLIC] !== "number" || typeof by[DIASTOLIC] !== "number") return null;
    return { t, v: by[SYSTOLIC], w: by[DIASTOLIC] };
  }
  return typeof r.value === "number" ? { t, v: r.value } : null;
}

/** A reading's value as text with its unit: "72 /min", "121/79 mmHg". */
export function valueText(r) {
  const info = CODES[r.code] ?? { unit: r.unit ?? "", digits: 2 };
  const p = pointOf(r);
  if (!p) return "?";
  const v = p.w === undefined ? num(p.v, info.digits) : `${num(p.v, 0)}/${num(p.w, 0)}`;
  return `${v} ${info.unit}`.trim();
}

/** The latest POINTS readings of each code, kept in time order. */
export class Series {
  constructor(limit = POINTS) {
    this.limit = limit;
    this.byCode = new Map();
    this.count = 0;
  }

  add(readings) {
    for (const r of readings ?? []) {
      const p = r && typeof r === "object" ? pointOf(r) : null;
      if (!p) continue;
      const list = this.byCode.get(r.code) ?? [];
      list.push({ ...p, reading: r });
      list.sort((a, b) => a.t - b.t);
      if (list.length > this.limit) list.splice(0, list.length - this.limit);
      this.byCode.set(r.code, list);
      this.count += 1;
    }
  }

  codes() {
    const rank = (c) => (ORDER.includes(c) ? ORDER.indexOf(c) : ORDER.length);
    return [...this.byCode.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  points(code) {
    return this.byCode.get(code) ?? [];
  }

  latest(code) {
    const list = this.points(code);
    return list.length ? list[list.length - 1].reading : null;
  }
}

// -- charts ---------------------------------------------------------------------------------

// The SVG namespace is a name, not an address: nothing is fetched from it.
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/**
 * A sparkline of one code's points: an <svg role="img"> whose label says what it shows in
 * words (range and latest), so the chart is never the only way to read it.
 */
export function sparkline(code, points, { width = 200, height = 48 } = {}) {
  const info = CODES[code] ?? { unit: "", digits: 2 };
  const values = points.flatMap((p) => (p.w === undefined ? [p.v] : [p.v, p.w]));
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = 4;
  const x = (i) =>
    points.length === 1 ? width / 2 : pad + (i * (width - 2 * pad)) / (points.length - 1);
  // A flat series is drawn across the middle rather than along an edge.
  const y = (v) => (hi === lo ? height / 2 : height - pad - ((v - lo) / (hi - lo)) * (height - 2 * pad));
  const range = `${num(lo, info.digits)} to ${num(hi, info.digits)} ${info.unit}`;
  const label = `${nameOf(code)}: ${points.length} reading${points.length === 1 ? "" : "s"}, ${range}`;
  const chart = svg("svg", {
    class: "spark",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "none",
  });
  const title = svg("title");
  title.textContent = label;
  chart.append(title);
  const line = (key, cls) => {
    const pts = points.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { class: `line ${cls}`, points: pts }));
    const last = points.length - 1;
    const dot = `M${x(last).toFixed(1)},${y(points[last][key]).toFixed(1)}h0`;
    chart.append(svg("path", { class: `dot ${cls}`, d: dot }));
  };
  line("v", "main");
  if (points.some((p) => p.w !== undefined)) line("w", "second");
  return chart;
}

/**
 * One card per code: name, latest value and time, a sparkline. `when(t)` formats a time.
 * Returns the cards (for a container's replaceChildren).
 */
export function cards(series, when) {
  return series.codes().map((code) => {
    const points = series.points(code);
    const last = series.latest(code);
    return el(
      "li",
      { class: "vital", "data-code": code },
      el("span", { class: "vital-name" }, nameOf(code)),
      el("span", { class: "vital-value" }, valueText(last)),
      el("span", { class: "vital-time" }, when(last.time)),
      sparkline(code, points),
    );
  });
}
