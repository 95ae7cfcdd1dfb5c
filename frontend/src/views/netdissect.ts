// Network Dissection (Bau et al., CVPR 2017): one record per layer and explained step, its units'
// concept labels (deepvid_plugin/kinds/netdissect.py). Served through the generic routes with
// kind=netdissect: `instances` lists the layers (subjects are rows) with every step's summary,
// which holds all the charts need (unique detectors per category, the random-init baseline, each
// concept's detector count, each unit's label and IoU); `record` of one layer and step adds the
// concept names and, per unit, its strongest probe thumbnails with its mask.
//
// The page: unique detectors against step per layer (the random-init baseline as a grey band),
// a concept x step heat map of the selected layer, and its unit table (label, category, IoU, an
// IoU sparkline over steps with label switches marked, top probe images with the mask overlaid).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { clear, fmt, h } from "../dom";
import { catColor, conceptColor } from "../colors";
import type { ViewHost } from "../host";
import type { EncodedMap, EnvelopeRecordResp, KindInfo } from "../types";
import { pageShell } from "./page";
import { registerView } from "./registry";

const KIND = "netdissect";
/** Rows of the unit table (best IoU first); a 512-unit layer would be a very long page. */
const MAX_UNITS = 100;


interface NdStep {
  step: number;
  unique: Record<string, number>;
  baseline: Record<string, number> | null;
  detectors: number;
  concepts: number[];
  unit_label: number[];
  unit_iou: number[];
  switches: number | null;
  headline: number | null;
}

interface NdLayer {
  id: string;
  steps: NdStep[];
}

interface NdInstances {
  instances: NdLayer[];
  warnings: string[];
}

interface NdMeta {
  layer: string;
  shape: number[];
  labels: string[];
  label_category: string[];
  categories: string[];
  iou_threshold: number;
  quantile: number;
  n_probe: number;
}

const STYLE = `
.nd { padding: 16px 20px; max-width: 1400px; }
.nd h2 { margin: 0 0 4px; font-size: 18px; }
.nd h3 { margin: 18px 0 6px; font-size: 15px; }
.nd .nd-lead { color: var(--muted); margin: 0 0 10px; max-width: 900px; }
.nd-charts { display: flex; flex-wrap: wrap; gap: 12px; }
.nd-chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px;
  cursor: pointer; }
.nd-chart.selected { border-color: var(--accent); box-shadow: 0 0 0 2px rgba(37,99,235,.15); }
.nd-chart figcaption { font-weight: 600; font-size: 13px; margin-bottom: 2px; }
.nd-chart .nd-note { color: var(--muted); font-size: 12px; }
.nd-controls { display: flex; gap: 14px; align-items: center; margin: 14px 0 4px; flex-wrap: wrap; }
.nd-heat { display: grid; gap: 1px; font-size: 12px; align-items: center; background: var(--card);
  border: 1px solid var(--line); border-radius: 8px; padding: 8px; width: max-content; max-width: 100%;
  overflow-x: auto; }
.nd-heat .nd-hc { width: 26px; height: 18px; border-radius: 2px; font-size: 10px; line-height: 18px;
  text-align: center; cursor: pointer; }
.nd-heat .nd-hc.sel { outline: 2px solid #111827; outline-offset: -1px; }
.nd-heat .nd-hl { padding-right: 8px; white-space: nowrap; }
.nd-heat .nd-hx { text-align: center; color: var(--muted); font-size: 11px; }
.nd-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 5px;
  box-shadow: 0 0 0 1px rgba(17, 24, 39, .35); }
.nd-table { border-collapse: collapse; background: var(--card); font-size: 13px; }
.nd-table th, .nd-table td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: middle; }
.nd-table th { color: var(--muted); font-weight: 600; position: sticky; top: 0; background: var(--card); }
.nd-table tr.det td.nd-iou { font-weight: 600; }
.nd-table td.nd-num { text-align: right; font-variant-numeric: tabular-nums; }
.nd-switch { color: var(--changed); font-weight: 600; }
.nd-tops { display: flex; gap: 4px; }
.nd-tops canvas { width: 56px; height: 56px; border-radius: 3px; border: 1px solid var(--line); }
.nd-spark { width: 140px; height: 30px; }
.nd-legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12px; color: var(--muted); margin: 4px 0; }
.nd-band { display: inline-block; width: 18px; height: 10px; background: rgba(107,114,128,.25);
  border-top: 1px dashed #6b7280; vertical-align: middle; margin-right: 5px; }
`;

function injectStyle(): void {
  if (document.getElementById("nd-style")) return;
  document.head.appendChild(h("style", { id: "nd-style" }, STYLE));
}

/** An encoded map of any rank, as flat values in the stored units (http_api.md). */
function decodeN(m: EncodedMap): { shape: number[]; values: Float32Array } {
  const bin = atob(m.data);
  const values = new Float32Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    const b = bin.charCodeAt(i);
    values[i] = ((b > 127 ? b - 256 : b) / 127) * m.scale;
  }
  return { shape: m.shape, values };
}

function isMap(v: unknown): v is EncodedMap {
  return typeof v === "object" && v !== null && "data" in v && "shape" in v;
}

function total(counts: Record<string, number> | null): number | null {
  return counts === null ? null : Object.values(counts).reduce((a, b) => a + b, 0);
}

// ---- unique detectors against step, one chart per layer -------------------------------------
function detectorChart(layer: NdLayer, selected: boolean, step: number, onPick: (step: number) => void): HTMLElement {
  const xs = layer.steps.map((s) => s.step);
  const cats = Object.keys(layer.steps[0]?.unique ?? {});
  const used = cats.filter((c) => layer.steps.some((s) => (s.unique[c] ?? 0) > 0 || (s.baseline?.[c] ?? 0) > 0));
  const base = total(layer.steps[0]?.baseline ?? null);
  const box = h("div", {});
  const fig = h("figure", { class: "nd-chart" + (selected ? " selected" : ""), "data-testid": "nd-detectors-chart",
    "data-layer": layer.id },
  h("figcaption", {}, `${layer.id}`), box,
  h("div", { class: "nd-note" }, (base === null ? "no random-init baseline recorded"
    : `grey band: random init (${base} unique detector${base === 1 ? "" : "s"})`) + " · dotted line: the selected step"));
  const band = (u: uPlot) => {
    const ctx = u.ctx;
    const { left, width, top, height } = u.bbox;
    ctx.save();
    if (base !== null) {
      const y0 = u.valToPos(0, "y", true);
      const y1 = u.valToPos(base, "y", true);
      ctx.fillStyle = "rgba(107,114,128,0.22)";
      ctx.fillRect(left, Math.min(y0, y1), width, Math.max(1, Math.abs(y0 - y1)));
      ctx.strokeStyle = "#6b7280";
      ctx.setLineDash([4 * uPlot.pxRatio, 3 * uPlot.pxRatio]);
      ctx.beginPath();
      ctx.moveTo(left, y1);
      ctx.lineTo(left + width, y1);
      ctx.stroke();
    }
    const x = u.valToPos(step, "x", true);
    ctx.strokeStyle = "#111827";
    ctx.setLineDash([2 * uPlot.pxRatio, 2 * uPlot.pxRatio]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.restore();
  };
  const ymax = Math.max(1, base ?? 0, ...layer.steps.map((s) => total(s.unique) ?? 0));
  const series = [
    { label: "all", values: layer.steps.map((s) => total(s.unique)), color: "#111827", width: 2.5 },
    ...used.map((c) => ({ label: c, values: layer.steps.map((s) => s.unique[c] ?? 0), color: catColor(c), width: 1.5 })),
  ];
  const opts: uPlot.Options = {
    width: 340, height: 170,
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    scales: {
      x: { time: false, range: xs.length > 1 ? undefined : [xs[0] - 1, xs[0] + 1] },
      y: { range: [0, Math.ceil(ymax * 1.15) + 0.5] },
    },
    axes: [
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 26, label: "step", labelSize: 14,
        incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 30, incrs: [1, 2, 5, 10, 20, 50, 100] },
    ],
    series: [{ label: "step" }, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: s.width, points: { show: xs.length <= 40, size: 4, fill: s.color },
    }))],
    hooks: {
      drawClear: [band],
      ready: [(u: uPlot) => u.over.addEventListener("click", () => {
        const idx = u.cursor.idx;
        onPick(idx === null || idx === undefined ? xs[xs.length - 1] : xs[idx]);
      })],
    },
  };
  new uPlot(opts, [xs, ...series.map((s) => s.values)] as uPlot.AlignedData, box);
  return fig;
}

// ---- concept x step heat map ----------------------------------------------------------------
function heatMap(layer: NdLayer, meta: NdMeta, step: number, onPick: (step: number) => void): HTMLElement {
  const steps = layer.steps;
  const rows = meta.labels.map((name, c) => ({ name, c, cat: meta.label_category[c],
    sum: steps.reduce((a, s) => a + (s.concepts[c] ?? 0), 0) }))
    .filter((r) => r.sum > 0)
    .sort((a, b) => meta.categories.indexOf(a.cat) - meta.categories.indexOf(b.cat) || b.sum - a.sum);
  const peak = Math.max(1, ...rows.flatMap((r) => steps.map((s) => s.concepts[r.c] ?? 0)));
  const grid = h("div", { class: "nd-heat", "data-testid": "nd-heatmap", "data-rows": rows.length,
    style: `grid-template-columns: auto repeat(${steps.length}, 26px)` });
  if (!rows.length) {
    return h("p", { class: "muted", "data-testid": "nd-heatmap", "data-rows": 0 },
      "No unit of this layer is a detector at any step yet.");
  }
  for (const r of rows) {
    grid.appendChild(h("div", { class: "nd-hl", title: r.cat },
      h("span", { class: "nd-dot", style: `background:${conceptColor(r.name, r.cat)}` }), r.name));
    for (const s of steps) {
      const n = s.concepts[r.c] ?? 0;
      const a = n / peak;
      grid.appendChild(h("div", {
        class: "nd-hc" + (s.step === step ? " sel" : ""), "data-testid": "nd-heat-cell",
        "data-concept": r.name, "data-step": s.step, "data-count": n,
        title: `${r.name} (${r.cat}) at step ${s.step}: ${n} detector unit${n === 1 ? "" : "s"}`,
        style: `background: rgba(37, 99, 235, ${n ? 0.15 + 0.85 * a : 0.04}); color: ${a > 0.5 ? "#fff" : "#1e3a8a"}`,
        onclick: () => onPick(s.step),
      }, n ? String(n) : ""));
    }
  }
  grid.appendChild(h("div", { class: "nd-hl muted" }, "step"));
  for (const s of steps) grid.appendChild(h("div", { class: "nd-hx" }, String(s.step)));
  return grid;
}

// ---- the unit table -------------------------------------------------------------------------
function sparkline(values: (number | null)[], switches: boolean[], at: number, threshold: number): HTMLCanvasElement {
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const W = 140, H = 30;
  const c = h("canvas", { class: "nd-spark", width: W * dpr, height: H * dpr });
  const ctx = c.getContext("2d")!;
  ctx.scale(dpr, dpr);
  const top = Math.max(threshold * 1.5, ...values.map((v) => v ?? 0), 1e-6);
  const x = (i: number) => (values.length > 1 ? 4 + (i * (W - 8)) / (values.length - 1) : W / 2);
  const y = (v: number) => H - 3 - (v / top) * (H - 6);
  ctx.strokeStyle = "#9ca3af";
  ctx.setLineDash([2, 2]);
  ctx.beginPath();
  ctx.moveTo(0, y(threshold));
  ctx.lineTo(W, y(threshold));
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.strokeStyle = "#2563eb";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v ?? 0)) : ctx.moveTo(x(i), y(v ?? 0))));
  ctx.stroke();
  values.forEach((v, i) => {
    if (switches[i]) {
      ctx.fillStyle = "#d97706";
      ctx.beginPath();
      ctx.arc(x(i), y(v ?? 0), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (i === at) {
      ctx.strokeStyle = "#111827";
      ctx.beginPath();
      ctx.arc(x(i), y(v ?? 0), 3.5, 0, 2 * Math.PI);
      ctx.stroke();
    }
  });
  return c;
}

/** Pixels per probe pixel in the unit table's thumbnails (an 8 px probe becomes 56 px). */
const THUMB_PX = 56;

/** A probe thumbnail with the unit's mask: inside at full colour, outside dimmed, and the mask's
 * border drawn *between* pixels (a dark line with a white halo), so the detected colour itself
 * shows: a "white" detector's mask is white, not a yellow outline. */
function maskedThumb(images: { shape: number[]; values: Float32Array }, p: number,
  masks: { shape: number[]; values: Float32Array }, u: number, t: number): HTMLCanvasElement {
  const [, , s] = images.shape;
  const T = masks.shape[1];
  const f = Math.max(1, Math.floor(THUMB_PX / s));
  const c = h("canvas", { width: s * f, height: s * f, "data-testid": "nd-mask-thumb" });
  const ctx = c.getContext("2d")!;
  const src = document.createElement("canvas");
  src.width = src.height = s;
  const img = src.getContext("2d")!.createImageData(s, s);
  const base = p * 3 * s * s;
  const mbase = (u * T + t) * s * s;
  const on = (x: number, y: number) => x >= 0 && y >= 0 && x < s && y < s && masks.values[mbase + y * s + x] > 0.5;
  for (let i = 0; i < s * s; i++) {
    const k = on(i % s, Math.floor(i / s)) ? 1 : 0.35;
    for (let ch = 0; ch < 3; ch++) {
      img.data[i * 4 + ch] = Math.round(Math.min(255, images.values[base + ch * s * s + i]) * k);
    }
    img.data[i * 4 + 3] = 255;
  }
  src.getContext("2d")!.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, s * f, s * f);
  // every pixel edge with the mask on one side only
  const path = new Path2D();
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      if (!on(x, y)) continue;
      if (!on(x, y - 1)) { path.moveTo(x * f, y * f); path.lineTo((x + 1) * f, y * f); }
      if (!on(x, y + 1)) { path.moveTo(x * f, (y + 1) * f); path.lineTo((x + 1) * f, (y + 1) * f); }
      if (!on(x - 1, y)) { path.moveTo(x * f, y * f); path.lineTo(x * f, (y + 1) * f); }
      if (!on(x + 1, y)) { path.moveTo((x + 1) * f, y * f); path.lineTo((x + 1) * f, (y + 1) * f); }
    }
  }
  ctx.lineCap = "square";
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = 3;
  ctx.stroke(path);
  ctx.strokeStyle = "#111827";
  ctx.lineWidth = 1.5;
  ctx.stroke(path);
  return c;
}

function unitTable(layer: NdLayer, meta: NdMeta, rec: EnvelopeRecordResp, step: number): HTMLElement {
  const steps = layer.steps;
  const at = Math.max(0, steps.findIndex((s) => s.step === step));
  const cur = steps[at];
  const thumbs = isMap(rec.arrays.top_thumbs) ? decodeN(rec.arrays.top_thumbs) : null;
  const masks = isMap(rec.arrays.top_masks) ? decodeN(rec.arrays.top_masks) : null;
  const images = isMap(rec.arrays.probe_images) ? decodeN(rec.arrays.probe_images) : null;
  const bLabel = Array.isArray(rec.arrays.baseline_label) ? rec.arrays.baseline_label : null;
  const bIou = Array.isArray(rec.arrays.baseline_iou) ? rec.arrays.baseline_iou : null;
  const units = cur.unit_iou.map((iou, u) => ({ u, iou })).sort((a, b) => b.iou - a.iou).slice(0, MAX_UNITS);
  const T = thumbs ? thumbs.shape[1] : 0;
  const body = h("tbody", {});
  for (const { u, iou } of units) {
    const label = cur.unit_label[u];
    const cat = meta.label_category[label] ?? "";
    const history = steps.map((s) => s.unit_label[u]);
    const switched = history.map((l, i) => i > 0 && l !== history[i - 1]);
    const nSwitch = switched.filter(Boolean).length;
    const story = history.map((l, i) => (i === 0 || switched[i]) ? `${meta.labels[l]} (step ${steps[i].step})` : null)
      .filter((x) => x !== null).join(" → ");
    const det = iou > meta.iou_threshold;
    const tops = h("div", { class: "nd-tops", "data-testid": "nd-top-images" });
    if (thumbs && masks && images) {
      for (let t = 0; t < T; t++) {
        const p = Math.round(thumbs.values[u * T + t]);
        const cv = maskedThumb(images, p, masks, u, t);
        cv.title = `probe thumbnail ${p}: unit ${u}'s mask (top ${(meta.quantile * 100).toFixed(1)}% activations) in colour`;
        tops.appendChild(cv);
      }
    }
    body.appendChild(h("tr", { class: det ? "det" : "", "data-testid": "nd-unit-row", "data-unit": u,
      "data-label": meta.labels[label], "data-switches": nSwitch },
    h("td", { class: "nd-num" }, String(u)),
    h("td", {}, meta.labels[label] ?? "?"),
    h("td", {}, h("span", { class: "nd-dot", style: `background:${catColor(cat)}` }), cat),
    h("td", { class: "nd-num nd-iou" }, fmt(iou, 3), det ? " ✓" : ""),
    h("td", { title: story }, sparkline(steps.map((s) => s.unit_iou[u] ?? null), switched, at, meta.iou_threshold)),
    h("td", { class: "nd-num" + (nSwitch ? " nd-switch" : ""), title: story, "data-testid": "nd-switches" },
      nSwitch ? `${nSwitch}` : "–"),
    h("td", { class: "muted" }, bLabel && bIou ? `${meta.labels[bLabel[u]] ?? "?"} ${fmt(bIou[u], 3)}` : "–"),
    h("td", {}, tops)));
  }
  const n = cur.unit_iou.length;
  return h("div", {},
    h("div", { class: "nd-legend" },
      h("span", {}, `${cur.detectors} of ${n} units are detectors (IoU > ${meta.iou_threshold}) at step ${cur.step}`),
      n > MAX_UNITS ? h("span", {}, `showing the ${MAX_UNITS} best units`) : null,
      h("span", {}, h("span", { class: "nd-dot", style: "background:#d97706" }), "label switch (sparkline; dashed: the IoU threshold)"),
      h("span", {}, "top probe images: the unit's mask in full colour inside the dark outline, the rest dimmed")),
    h("table", { class: "nd-table", "data-testid": "nd-unit-table" },
      h("thead", {}, h("tr", {}, ...["unit", "label", "category", "IoU", "IoU over steps", "switches",
        "random init", "top probe images"].map((t) => h("th", {}, t)))),
      body));
}

// ---- the page ------------------------------------------------------------------------------
async function draw(host: ViewHost, root: HTMLElement, run: string): Promise<void> {
  const resp = await host.source.get<NdInstances>("instances", { run, kind: KIND });
  host.addWarnings(resp.warnings);
  const layers = resp.instances.filter((l) => l.steps.length > 0);
  if (!layers.length) {
    root.appendChild(h("p", { class: "muted" }, "No readable Network Dissection records in this run."));
    return;
  }
  let li = 0;
  let step = layers[0].steps[layers[0].steps.length - 1].step;
  const charts = h("div", { class: "nd-charts", "data-testid": "nd-charts" });
  const select = h("select", { "data-testid": "nd-layer-select" },
    ...layers.map((l, i) => h("option", { value: String(i) }, l.id)));
  const stepLabel = h("span", { class: "muted", "data-testid": "nd-step" });
  const detail = h("div", { "data-testid": "nd-detail" });
  let token = 0;

  const pick = (i: number, s: number) => {
    li = i;
    step = layers[i].steps.some((x) => x.step === s) ? s : layers[i].steps[layers[i].steps.length - 1].step;
    void refresh();
  };

  const refresh = async () => {
    const mine = ++token;
    const layer = layers[li];
    select.value = String(li);
    stepLabel.textContent = `step ${step}`;
    clear(charts);
    layers.forEach((l, i) => charts.appendChild(detectorChart(l, i === li, step, (s) => pick(i, s))));
    detail.setAttribute("data-loaded", "false");
    let rec: EnvelopeRecordResp;
    try {
      rec = await host.source.get<EnvelopeRecordResp>("record", { run, instance: layer.id, step: String(step), kind: KIND });
    } catch (err) {
      if (mine !== token) return;
      clear(detail);
      detail.appendChild(h("p", { class: "muted" }, `The record of ${layer.id} at step ${step} could not be read: ${String(err)}`));
      return;
    }
    if (mine !== token) return;
    host.addWarnings(rec.warnings);
    const meta = rec.meta as unknown as NdMeta;
    const [units, mh, mw] = meta.shape;
    clear(detail);
    detail.append(
      h("h3", {}, `Concepts × steps: ${layer.id}`),
      h("p", { class: "nd-lead" }, "How many of the layer's units detect each concept (IoU above the threshold) at each " +
        "explained step; concepts no unit ever detects are left out. Click a column to select that step."),
      heatMap(layer, meta, step, (s) => pick(li, s)),
      h("h3", {}, `Units of ${layer.id} at step ${step}`),
      h("p", { class: "nd-lead" }, `${units} units, ${mh}×${mw} activation maps, probed with ${meta.n_probe} images; ` +
        "each unit's label is the concept its top activations overlap best."),
      unitTable(layer, meta, rec, step));
    detail.setAttribute("data-loaded", "true");
    detail.setAttribute("data-layer", layer.id);
    detail.setAttribute("data-step", String(step));
  };

  select.addEventListener("change", () => pick(Number(select.value), step));
  root.append(
    h("h3", {}, "Unique detectors per layer"),
    h("p", { class: "nd-lead" }, "Distinct concepts detected by a layer's units (unit IoU above the threshold), in total " +
      "and per category, step by step. The grey band is the same layer at random initialisation: what chance alone " +
      "gives. Click a chart to inspect that layer and step."),
    charts,
    h("div", { class: "nd-controls" }, h("label", { class: "dv-field" }, "layer ", select), stepLabel),
    detail);
  await refresh();
}

registerView({
  kind: KIND,
  label: "Dissection",
  description: "Network Dissection: which units of a layer detect which concepts",
  layout: "page",
  render(host, parent, run, info: KindInfo | null) {
    if (info === null) {
      parent.appendChild(pageShell(KIND, "Network Dissection", "Add a NetDissectExplainer to the " +
        "callback to label each layer's units with the concepts they detect.", run, info));
      return;
    }
    injectStyle();
    const root = h("div", { class: "nd", "data-testid": "page-view", "data-kind": KIND, "data-has-data": "true" },
      h("h2", {}, "Network Dissection"),
      h("p", { class: "nd-lead" }, `${info.subjects} layer${info.subjects === 1 ? "" : "s"} × ${info.steps} steps. ` +
        "Each unit is labelled with the concept its strongest activations overlap best (Bau et al., CVPR 2017)."));
    parent.appendChild(root);
    draw(host, root, run).catch((err) => {
      root.appendChild(h("p", { class: "dv-banner warn", "data-testid": "nd-error" }, `Could not load: ${String(err)}`));
    });
  },
});
