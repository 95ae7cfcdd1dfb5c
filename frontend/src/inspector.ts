// Per-instance panel: the instance, a step slider (arrow keys step through it), the fidelity over
// steps, the probability of the true and the predicted class over steps, and the map's deletion
// AUC over steps next to a random map's.
import type { ViewHost } from "./host";
import { lineChart, type Chart, type Series } from "./charts";
import { SERIES } from "./colors";
import { className, fmt, h, pct } from "./dom";
import { imageCanvas } from "./draw";
import { NO_EVIDENCE, stepLowTrust, trustReason } from "./evidence";
import type { Instance, Timeline } from "./types";

export interface Inspector {
  select(step: number | null): void;
}

/** The instance panel of `inst`, from its whole step summaries (`tl`, its timeline). */
export function renderInspector(app: ViewHost, parent: HTMLElement, inst: Instance, tl: Timeline,
  names: string[]): Inspector {
  const all = tl.steps;
  const steps = all.map((s) => s.step);
  const low = all.filter(stepLowTrust).map((s) => s.step);
  const last = all[all.length - 1];

  const slider = h("input", {
    type: "range", min: 0, max: steps.length - 1, step: 1,
    value: Math.max(0, steps.indexOf(app.step ?? last.step)),
    "data-testid": "step-slider", "aria-label": "Step",
  });
  const stepOut = h("output", { class: "step-out", "data-testid": "step-value" });
  const status = h("div", { class: "step-status" });
  slider.addEventListener("input", () => app.selectStep(steps[Number(slider.value)]));

  // Only DeepVID's students have a fidelity; other kinds (Grad-CAM) show their evidence instead.
  const hasFidelity = all.some((s) => num(s.fidelity?.top1_agreement) !== null);
  const fidelity = !hasFidelity ? null : lineChart({
    title: "Fidelity over steps (student agrees with the model)",
    testid: "fidelity-chart",
    steps,
    series: [
      { label: "top-1 agreement", values: all.map((s) => num(s.fidelity?.top1_agreement)), color: SERIES.fidelity },
      { label: "R² (top class)", values: all.map((s) => num(s.fidelity?.r2_top)), color: SERIES.r2, dash: [5, 4] },
    ],
    yRange: [0, 1],
    lowSteps: low,
    selected: app.step,
    onPick: (s) => app.selectStep(s),
  });

  const truth = inst.label;
  const probSeries: Series[] = [
    // dashed, so the true-class line stays visible where the two coincide
    { label: "p(predicted)", values: all.map((s) => num(s.probs[s.predicted])), color: SERIES.predicted,
      dash: [6, 4] },
  ];
  if (truth !== null) {
    probSeries.unshift({ label: `p(true: ${className(names, truth)})`,
      values: all.map((s) => num(s.probs[truth])), color: SERIES.truth });
  }
  const probs = lineChart({
    title: truth !== null ? "Probability of the true and the predicted class" : "Probability of the predicted class",
    testid: "prob-chart",
    steps,
    series: probSeries,
    yRange: [0, 1],
    lowSteps: low,
    selected: app.step,
    onPick: (s) => app.selectStep(s),
  });

  // Faithfulness over steps: the map's deletion AUC (lower is better) against a random map's.
  const del = all.map((s) => num(s.fidelity?.deletion_auc));
  const faith = del.some((v) => v !== null)
    ? lineChart({
      title: "Deletion AUC over steps (lower: the map finds what the model uses)",
      testid: "faithfulness-chart",
      steps,
      series: [
        { label: "this map", values: del, color: SERIES.deletion },
        { label: "random map", values: all.map((s) => num(s.fidelity?.random_deletion_auc)),
          color: SERIES.random, dash: [5, 4] },
      ],
      yRange: [0, 1],
      lowSteps: low,
      selected: app.step,
      onPick: (s) => app.selectStep(s),
    })
    : null;

  const panel = h("section", { class: "card", "data-testid": "instance-panel", "data-instance": inst.id },
    h("div", { class: "inst-head" },
      imageCanvas(inst.image, 72, "inst-img"),
      h("div", { class: "inst-meta" },
        h("h3", { class: "inst-title", title: inst.id }, inst.id),
        h("div", { class: "muted" }, truth === null ? "true label unknown" : `true label: ${className(names, truth)}`),
        status)),
    h("div", { class: "slider-row" }, h("span", { class: "muted" }, "Step"), slider, stepOut),
    fidelity ? fidelity.el : null, probs.el,
    faith ? faith.el : h("p", { class: "muted chart-note", "data-testid": "no-evidence-chart" },
      `Deletion AUC over steps: ${NO_EVIDENCE}.`));
  parent.appendChild(panel);

  const charts: Chart[] = [fidelity, probs, faith].filter((c): c is Chart => c !== null);
  const select = (step: number | null) => {
    const i = step === null ? -1 : steps.indexOf(step);
    if (i < 0) return;
    const s = all[i];
    slider.value = String(i);
    stepOut.textContent = `${s.step}  (${i + 1}/${steps.length})`;
    status.textContent = "";
    status.append(
      h("span", { class: "pill" }, `predicted ${className(names, s.predicted)} · ${pct(s.probs[s.predicted])}`),
      stepLowTrust(s)
        ? h("span", { class: "pill warn", title: trustReason(s.trustworthy, s.fidelity) ?? "" },
          hasFidelity ? `⚠ low trust · fidelity ${fmt(s.fidelity?.top1_agreement)}` : "⚠ low trust")
        : hasFidelity ? h("span", { class: "pill good" }, `fidelity ${fmt(s.fidelity?.top1_agreement)}`) : "",
      s.changed ? h("span", { class: "pill changed" }, "◆ changed") : "",
    );
    charts.forEach((c) => c.select(s.step));
  };
  select(app.step);
  return { select };
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}
