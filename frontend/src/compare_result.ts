// One compare answer drawn: a title that says what is shown (kind, class, step), the instance with
// A's and B's maps over it on one colour scale fit for the kind's maps (never-negative maps get a
// one-sided scale), their difference B − A, the kind's own headline over steps, the probability
// of the true class, the runs' own metric (their test accuracy), and every common step at a
// glance.
import { lineChart, type Chart } from "./charts";
import { decodeMap } from "./codec";
import { SERIES } from "./colors";
import { append, className, clear, fmt, h, pct } from "./dom";
import { colorbar, imageCanvas, mapCanvas } from "./draw";
import { stepLowTrust, trustReason } from "./evidence";
import { defaultMetric } from "./metric_strip";
import type { CompareResp, KindInfo, MetricSeries, StepSummary } from "./types";
import { instanceView, viewFor } from "./views";

/** compare's `class` values with a name, in the picker's order (the default first). */
export const CLASS_MODES: readonly (readonly [string, string])[] = [
  ["own", "Each run's own prediction"],
  ["a", "A's prediction"],
  ["b", "B's prediction"],
  ["label", "True label"],
];

export interface ResultOptions {
  nameA: string;
  nameB: string;
  mode: string;
  kind: string;
  /** The kind as run A holds it (its headline's words), when known. */
  info: KindInfo | null;
  /** Each run's own metrics (A's, B's). */
  metrics: [MetricSeries[], MetricSeries[]];
  /** The step to show (null: the last common one). */
  step: number | null;
  onStep(step: number): void;
}

/** Why a side shows the class it shows: "6 (its prediction, the true label)". */
function mapOf(names: string[], k: number, s: StepSummary | undefined, other: StepSummary | undefined,
  label: number | null, otherName: string): string {
  const why = [];
  if (s && s.predicted === k) why.push("its prediction");
  else if (other && other.predicted === k) why.push(`${otherName}'s prediction`);
  if (label === k) why.push("the true label");
  return `${className(names, k)}${why.length ? ` (${why.join(", ")})` : ""}`;
}

export function renderResult(out: HTMLElement, cmp: CompareResp, o: ResultOptions): void {
  const [ra, rb] = cmp.runs;
  const names = cmp.class_names;
  const view = instanceView(o.kind);
  const label = viewFor(o.kind)?.label ?? o.kind;
  const sign = view?.mapSign ?? "signed";
  const sa = cmp.per_run[ra] ?? [];
  const sb = cmp.per_run[rb] ?? [];
  const steps = cmp.steps;
  if (cmp.note) out.append(h("div", { class: "dv-banner info", "data-testid": "compare-note" }, "ℹ ", cmp.note));
  if (!steps.length || !cmp.maps.length) {
    out.append(h("div", { class: "dv-state", "data-testid": "empty-state" },
      h("h2", {}, steps.length ? "No maps to compare" : "No common steps"),
      h("p", {}, !steps.length ? "The two runs have no step in common for this instance."
        // e.g. Grad-CAM keeps the maps of its prediction and of the true label only
        : cmp.missing?.length ? `No step has ${label} maps of ${CLASS_MODES.find(([v]) => v === o.mode)?.[1].toLowerCase()
          ?? `class “${className(names, Number(o.mode))}”`} in both runs: ${cmp.missing[0].reason}. `
          + (o.mode === "own" ? "" : "Pick “Each run's own prediction” to see each run's map of what it predicts.")
          : "At no common step could both runs' maps be read; see the warnings above.")));
    return;
  }

  let selected = o.step !== null && steps.includes(o.step) ? o.step : steps[steps.length - 1];
  // `sa`, `sb` and the charts follow `steps`; `maps` can be shorter (a step whose record could not
  // be read has no maps), so a map is placed by its step, never by its position in `maps`.
  const index = new Map(steps.map((s, i) => [s, i]));
  const pick = (s: number) => setStep(index.get(s) ?? -1);
  const series = (f: (s: StepSummary) => unknown) => [
    { label: `A: ${o.nameA}`, values: sa.map((s) => num(f(s))), color: SERIES.a },
    { label: `B: ${o.nameB}`, values: sb.map((s) => num(f(s))), color: SERIES.b },
  ];
  const charts: Chart[] = [];
  // the kind's own number: DeepVID's fidelity, Grad-CAM's deletion AUC, Exp-KD's Pearson r
  const headline = o.info?.headline ?? view?.headlineLabel ?? "headline";
  if (sa.some((s) => num(s.headline) !== null) || sb.some((s) => num(s.headline) !== null)) {
    charts.push(lineChart({ title: `${label}: ${headline}` + (o.info ? ` (${o.info.higher_is_better ? "higher" : "lower"} is better)` : ""),
      testid: "compare-headline", steps, series: series((s) => s.headline), selected, onPick: pick }));
  }
  const truth = cmp.label;
  const cls = truth ?? sa[sa.length - 1].predicted;
  charts.push(lineChart({ title: truth !== null ? `Probability of the true class, ${className(names, cls)}`
    : `Probability of ${className(names, cls)}`, testid: "compare-prob", steps,
  series: series((s) => s.probs?.[cls]), yRange: [0, 1], selected, onPick: pick }));
  const metric = metricChart(o, steps, selected, pick);
  if (metric) charts.push(metric);

  const slider = h("input", { type: "range", min: 0, max: steps.length - 1, step: 1, value: steps.length - 1,
    "data-testid": "compare-step-slider", "aria-label": "Step" });
  const stepOut = h("output", { class: "step-out" });
  const title = h("h2", { class: "compare-title", "data-testid": "compare-title" });
  const why = h("p", { class: "muted cmp-class", "data-testid": "compare-classes" });
  const big = h("div", { class: "compare-maps" });
  slider.addEventListener("input", () => setStep(Number(slider.value)));

  function setStep(i: number): void {
    if (i < 0) return;
    selected = steps[i];
    o.onStep(selected);
    slider.value = String(i);
    stepOut.textContent = `${selected}  (${i + 1}/${steps.length})`;
    charts.forEach((c) => c.select(selected));
    strip.querySelectorAll(".strip-col").forEach((c) =>
      c.classList.toggle("selected", Number((c as HTMLElement).dataset.step) === selected));
    const m = cmp.maps.find((x) => x.step === selected);
    clear(big);
    if (!m) {
      const reason = cmp.missing?.find((x) => x.step === selected)?.reason;
      title.textContent = `${label} maps at step ${selected}`;
      why.textContent = "";
      big.append(h("p", { class: "muted", "data-testid": "compare-no-maps" }, reason
        ? `No maps at step ${selected}: ${reason}.`
        : `The maps of step ${selected} could not be read in one of the runs (see the warnings above).`));
      return;
    }
    const A = decodeMap(m.a);
    const B = decodeMap(m.b);
    const ca = m.class_a ?? m.class;
    const cb = m.class_b ?? m.class;
    const shared = Math.max(A.scale, B.scale, 1e-12);
    const stA = sa[i];
    const stB = sb[i];
    title.textContent = ca === cb ? `${label} map of ${className(names, ca)} at step ${selected}`
      : `${label} maps at step ${selected}: A's of ${className(names, ca)}, B's of ${className(names, cb)}`;
    title.dataset.kind = o.kind;
    why.textContent = `A: map of ${mapOf(names, ca, stA, stB, cmp.label, "B")} · B: map of `
      + `${mapOf(names, cb, stB, stA, cmp.label, "A")}. A and B share one colour scale`
      + (sign === "positive" ? " from 0 (never negative)." : ", centred at 0.");
    const panel = (tag: string, who: string, s: StepSummary | undefined, canvas: HTMLCanvasElement,
      bar: HTMLElement, testid: string) =>
      h("figure", { class: "cmp-panel", "data-testid": testid },
        h("figcaption", {}, h("b", {}, tag), h("span", { class: "muted cmp-run", title: who }, who)),
        canvas, bar,
        s ? h("div", { class: "cmp-stats" + (stepLowTrust(s) ? " lowfi" : "") },
          `predicted ${className(names, s.predicted)} (${pct(s.probs?.[s.predicted])})`,
          num(s.headline) !== null ? ` · ${view?.headlineLabel ?? "headline"} ${fmt(s.headline)}` : "",
          stepLowTrust(s) ? h("span", { "data-testid": "compare-low-trust" },
            ` · ⚠ low trust: ${trustReason(s.trustworthy, s.fidelity)}`) : "") : null);
    // The instance first, and both maps over it (dimmed), as in the detail panel: a map means
    // little without what it points at (in the demo, the marker in the corner).
    const image = cmp.image ?? undefined;
    if (image) {
      append(big, h("figure", { class: "cmp-panel", "data-testid": "compare-instance-image" },
        h("figcaption", {}, h("b", {}, "instance"), h("span", { class: "muted" }, cmp.instance)),
        imageCanvas(image, 168)));
    }
    append(big,
      panel("A", o.nameA, stA, mapCanvas(A, 168, { sharedScale: shared, image, sign }),
        colorbar(shared, label, sign), "compare-map-a"),
      panel("B", o.nameB, stB, mapCanvas(B, 168, { sharedScale: shared, image, sign }),
        colorbar(shared, label, sign), "compare-map-b"));
    if (m.diff) {
      const D = decodeMap(m.diff);
      append(big, panel("B − A", "difference", undefined, mapCanvas(D, 168, { cls: "map diff", image }),
        colorbar(D.scale, "difference"), "diff-map"));
    } else {
      append(big, h("figure", { class: "cmp-panel cmp-nodiff", "data-testid": "diff-none" },
        h("figcaption", {}, h("b", {}, "B − A")),
        h("p", { class: "muted" }, `Not drawn: A's map is of “${className(names, ca)}” and B's of “${className(names, cb)}”; `
          + "a difference of two classes' maps means nothing. Pick one class in “Map of” to compare them.")));
    }
  }

  // Every common step at a glance: A, B and the difference per column.
  const strip = h("div", { class: "strip", "data-testid": "compare-strip" },
    h("div", { class: "strip-col strip-head" }, h("span", {}, "step"), h("span", {}, "A"), h("span", {}, "B"), h("span", {}, "B − A")),
    ...cmp.maps.map((m) => {
      const i = index.get(m.step) ?? -1;
      const A = decodeMap(m.a);
      const B = decodeMap(m.b);
      const shared = Math.max(A.scale, B.scale, 1e-12);
      const lowA = sa[i] && stepLowTrust(sa[i]);
      const lowB = sb[i] && stepLowTrust(sb[i]);
      const ca = m.class_a ?? m.class;
      const cb = m.class_b ?? m.class;
      return h("button", { class: "strip-col", "data-step": m.step, onclick: () => pick(m.step),
        title: `step ${m.step}: A's map of ${className(names, ca)}, B's of ${className(names, cb)}` },
      h("span", { class: "strip-step" }, String(m.step)),
      h("span", { class: "strip-cell" + (lowA ? " lowfi" : "") }, mapCanvas(A, 40, { sharedScale: shared, sign })),
      h("span", { class: "strip-cell" + (lowB ? " lowfi" : "") }, mapCanvas(B, 40, { sharedScale: shared, sign })),
      m.diff ? h("span", { class: "strip-cell" }, mapCanvas(m.diff, 40))
        : h("span", { class: "strip-cell strip-nodiff", title: "A and B show different classes" }, "≠"));
    }));

  out.append(
    h("div", { class: "card" },
      title,
      h("div", { class: "slider-row" }, h("span", { class: "muted" }, "Step"), slider, stepOut),
      why, big),
    h("div", { class: "compare-charts" }, ...charts.map((c) => h("div", { class: "card" }, c.el))),
    h("div", { class: "card" }, h("h4", {}, "All common steps"),
      h("p", { class: "hint strip-key" }, "Hatched: low trust in that run · ≠: A and B show different classes, " +
        "so there is no difference to draw."),
      strip));
  setStep(index.get(selected) ?? steps.length - 1);
}

/** Both runs' own metric (the one the timeline shows by default: their test accuracy), over
 * their steps, next to the explanations' charts. */
function metricChart(o: ResultOptions, steps: number[], selected: number, pick: (s: number) => void): Chart | null {
  const [ma, mb] = o.metrics;
  const name = defaultMetric([...ma, ...mb].filter((m) => ma.some((x) => x.name === m.name) && mb.some((x) => x.name === m.name)));
  if (name === null) return null;
  const a = ma.find((m) => m.name === name)!;
  const b = mb.find((m) => m.name === name)!;
  const xs = [...new Set([...a.steps, ...b.steps])].sort((x, y) => x - y);
  const at = (m: MetricSeries) => xs.map((s) => { const i = m.steps.indexOf(s); return i < 0 ? null : m.values[i]; });
  return lineChart({ title: `The runs' ${name}`, testid: "compare-metric", steps: xs,
    series: [{ label: `A: ${o.nameA}`, values: at(a), color: SERIES.a },
      { label: `B: ${o.nameB}`, values: at(b), color: SERIES.b }],
    selected: steps.includes(selected) ? selected : null, onPick: pick });
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}
