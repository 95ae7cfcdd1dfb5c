// Small line charts over steps (uPlot): a marker for the selected step, shaded low-trust steps
// (with their legend), the values under the cursor in the legend, and a click anywhere selects
// the nearest step.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { LOW_TRUST_BAND } from "./colors";
import { fmtNumber, h } from "./dom";

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: number[];
}

export interface ChartSpec {
  title: string;
  steps: number[];
  series: Series[];
  yRange?: [number, number];
  /** Steps to shade as untrustworthy (low trust). */
  lowSteps?: number[];
  /** What the shaded steps are, for the legend (default "low-trust steps"). */
  lowLabel?: string;
  selected?: number | null;
  onPick?: (step: number) => void;
  testid?: string;
}

const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 1e5, 1e6, 1e7];

export interface Chart {
  el: HTMLElement;
  select(step: number | null): void;
}

export function lineChart(spec: ChartSpec): Chart {
  const box = h("div", { class: "chart" });
  const low = new Set(spec.lowSteps ?? []);
  const el = h("figure", { class: "chart-fig", "data-testid": spec.testid ?? "chart" },
    h("figcaption", {}, spec.title), box,
    h("div", { class: "chart-band-key" },
      spec.selected !== undefined ? h("span", { class: "sel-key" }, h("span", { class: "sel-swatch" }), "selected step")
        : null,
      low.size ? h("span", { class: "sel-key", "data-testid": "chart-band-key" },
        h("span", { class: "band-swatch", style: `background:${LOW_TRUST_BAND}` }), spec.lowLabel ?? "low-trust steps")
        : null));
  let selected = spec.selected ?? null;
  const xs = spec.steps;
  const half = xs.length > 1 ? (xs[xs.length - 1] - xs[0]) / (xs.length - 1) / 2 : 0.5;

  const decorate = (u: uPlot) => {
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    ctx.save();
    if (low.size) {
      ctx.fillStyle = LOW_TRUST_BAND;
      for (const s of xs) {
        if (!low.has(s)) continue;
        const x0 = u.valToPos(s - half, "x", true);
        const x1 = u.valToPos(s + half, "x", true);
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      }
    }
    if (selected !== null) {
      const x = u.valToPos(selected, "x", true);
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = 1.5 * uPlot.pxRatio;
      ctx.setLineDash([4 * uPlot.pxRatio, 3 * uPlot.pxRatio]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
    }
    ctx.restore();
  };

  const opts: uPlot.Options = {
    width: 360,
    height: 150,
    // hovering reads the values at a step out in the legend
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    scales: {
      x: { time: false, range: xs.length > 1 ? undefined : [xs[0] - 1, xs[0] + 1] },
      y: spec.yRange ? { range: spec.yRange } : {},
    },
    axes: [
      // Steps are integers: never put a tick at 0.5.
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 28, incrs: STEP_INCRS },
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 36 },
    ],
    series: [
      { label: "step", value: (_u, v) => (v === null || v === undefined ? "–" : String(v)) },
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 2,
        dash: s.dash,
        points: { show: xs.length <= 40, size: 5, fill: s.color },
        spanGaps: true,
        value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? "–" : fmtNumber(v)),
      })),
    ],
    hooks: {
      draw: [decorate],
      ready: [
        (u: uPlot) => {
          u.over.addEventListener("click", () => {
            const idx = u.cursor.idx;
            if (idx !== null && idx !== undefined && spec.onPick) spec.onPick(xs[idx]);
          });
        },
      ],
    },
  };
  const data = [xs, ...spec.series.map((s) => s.values)] as uPlot.AlignedData;
  const plot = new uPlot(opts, data, box);

  // Follow the container's width (the side panel is fluid).
  const resize = () => {
    const w = Math.max(220, Math.floor(box.clientWidth));
    if (w && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 150 });
  };
  new ResizeObserver(resize).observe(box);

  return {
    el,
    select(step) {
      selected = step;
      plot.redraw(false, false);
    },
  };
}

export interface CurveSpec {
  title: string;
  /** x positions (fraction of pixels, 0..1) shared by every series. */
  xs: number[];
  series: Series[];
  xLabel: string;
  testid?: string;
}

/** A small static chart of curves over [0, 1] (the deletion/insertion curves of one record). */
export function curveChart(spec: CurveSpec): HTMLElement {
  const box = h("div", { class: "chart" });
  const el = h("figure", { class: "chart-fig", "data-testid": spec.testid ?? "curve-chart" },
    h("figcaption", {}, spec.title), box);
  const opts: uPlot.Options = {
    width: 360,
    height: 150,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
    axes: [
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 22, label: spec.xLabel,
        labelSize: 14, labelGap: 0, labelFont: "11px system-ui, sans-serif", font: "11px system-ui, sans-serif",
        values: (_u, vals) => vals.map((v) => `${Math.round(v * 100)}%`) },
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { show: false }, size: 36,
        font: "11px system-ui, sans-serif" },
    ],
    series: [
      { label: spec.xLabel, value: (_u, v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`) },
      ...spec.series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, dash: s.dash,
        points: { show: spec.xs.length <= 24, size: 4, fill: s.color },
        value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? "–" : fmtNumber(v)),
      })),
    ],
  };
  const plot = new uPlot(opts, [spec.xs, ...spec.series.map((s) => s.values)] as uPlot.AlignedData, box);
  new ResizeObserver(() => {
    const w = Math.max(220, Math.floor(box.clientWidth));
    if (w && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 150 });
  }).observe(box);
  return el;
}
