// The first clue above the explanations: one of the run's own metrics (its test accuracy, its
// loss), drawn on the grid's step axis. Each grid column is an explained step; a metric logged
// at other steps (every epoch when explanations run every 5) is placed between the columns it
// falls between, so a drop in accuracy sits right above the cells of the steps it happened at.
// The strip scrolls with the grid. uPlot draws it, with the cursor's read-out in the head.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { SERIES } from "./colors";
import { clear, fmtNumber, h } from "./dom";
import type { MetricSeries } from "./types";
import { CELL_W, ROW_HEAD } from "./overview";

const HEIGHT = 54;

/** The metric shown by default: test accuracy when there is one, then any accuracy, else the
 * first by name. */
export function defaultMetric(metrics: readonly MetricSeries[]): string | null {
  const names = metrics.map((m) => m.name);
  const score = (n: string) => {
    const l = n.toLowerCase();
    const acc = /acc/.test(l) ? 2 : 0;
    const held = /(test|val|eval)/.test(l) ? 1 : 0;
    return acc + held;
  };
  return [...names].sort((a, b) => score(b) - score(a) || a.localeCompare(b))[0] ?? null;
}

/** A step's position on the grid's column axis (0 = the first column's centre): between the
 * columns of the explained steps it falls between, extrapolated past the ends. */
export function columnOf(step: number, steps: readonly number[]): number {
  const n = steps.length;
  if (n === 0) return 0;
  if (n === 1) return step - steps[0];
  let i = 0;
  while (i < n - 2 && step > steps[i + 1]) i++;
  const span = steps[i + 1] - steps[i] || 1;
  return i + (step - steps[i]) / span;
}

export interface MetricStrip {
  el: HTMLElement;
  /** The grid's selected step: the head reads the metric there. */
  select(step: number | null): void;
}

export function metricStrip(metrics: readonly MetricSeries[], steps: readonly number[], scroller: HTMLElement,
  chosen: string | null, onChoose: (name: string) => void): MetricStrip {
  if (!metrics.length) {
    return {
      el: h("div", { class: "metric-strip empty", "data-testid": "metric-strip", "data-metric": "" },
        h("span", { class: "muted" }, "No metrics logged for this run. Log your test accuracy with " +
          "callback.log_metrics(...) (or SummaryWriter.add_scalar, mlflow.log_metric) to see it here, " +
          "above the explanations, step by step.")),
      select: () => undefined,
    };
  }
  const series = metrics.find((m) => m.name === chosen) ?? metrics.find((m) => m.name === defaultMetric(metrics))!;
  const xs = series.steps.map((s) => columnOf(s, steps));
  const select = h("select", { "data-testid": "metric-select", "aria-label": "Metric" },
    ...metrics.map((m) => h("option", { value: m.name, selected: m.name === series.name }, m.name)));
  select.addEventListener("change", () => onChoose(select.value));
  const readout = h("span", { class: "metric-readout", "data-testid": "metric-readout" });
  const box = h("div", { class: "metric-plot" });
  const el = h("div", { class: "metric-strip", "data-testid": "metric-strip", "data-metric": series.name },
    h("div", { class: "metric-head", style: `width:${ROW_HEAD}px` },
      metrics.length > 1 ? select : h("b", { title: series.name }, series.name), readout),
    box);

  const values = series.values;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = (hi - lo) * 0.12 || Math.abs(hi) * 0.1 || 1;
  const stepAt = (i: number | null | undefined) => (i === null || i === undefined ? null : i);
  let selected: number | null = null;
  const say = (i: number | null, what: string) => {
    clear(readout);
    if (i === null) {
      readout.append(h("span", { class: "muted" }, `${fmtNumber(lo)} – ${fmtNumber(hi)}`));
      return;
    }
    readout.append(h("b", {}, fmtNumber(values[i])), h("span", { class: "muted" }, ` ${what} ${series.steps[i]}`));
  };
  const nearest = (step: number) => {
    let best = 0;
    series.steps.forEach((s, i) => { if (Math.abs(s - step) < Math.abs(series.steps[best] - step)) best = i; });
    return best;
  };
  const opts: uPlot.Options = {
    width: 400,
    height: HEIGHT,
    padding: [6, 0, 6, 0],
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 7 }, y: false },
    scales: { x: { time: false, auto: false }, y: { auto: false, range: [lo - pad, hi + pad] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: SERIES.metric, width: 2, points: { show: xs.length <= 60, size: 4, fill: SERIES.metric } }],
    hooks: {
      setCursor: [(u: uPlot) => {
        const i = stepAt(u.cursor.idx);
        if (i !== null) say(i, "at step");
        else if (selected !== null) say(nearest(selected), "at step");
        else say(null, "");
      }],
      drawClear: [(u: uPlot) => {
        // the selected step's column, as in the grid
        if (selected === null) return;
        const x = u.valToPos(columnOf(selected, steps), "x", true);
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = "rgba(37, 99, 235, 0.10)";
        const w = CELL_W * uPlot.pxRatio;
        ctx.fillRect(x - w / 2, u.bbox.top, w, u.bbox.height);
        ctx.restore();
      }],
    },
  };
  const plot = new uPlot(opts, [xs, values] as uPlot.AlignedData, box);
  const follow = () => {
    const w = Math.max(60, scroller.clientWidth - ROW_HEAD);
    if (Math.abs(w - plot.width) > 1) plot.setSize({ width: w, height: HEIGHT });
    const first = scroller.scrollLeft / CELL_W - 0.5;
    plot.setScale("x", { min: first, max: first + w / CELL_W });
  };
  scroller.addEventListener("scroll", follow, { passive: true });
  new ResizeObserver(follow).observe(scroller);
  requestAnimationFrame(follow);
  say(null, "");
  return {
    el,
    select(step) {
      selected = step;
      if (step !== null && series.steps.length) say(nearest(step), "at step");
      plot.redraw(false, false);
    },
  };
}
