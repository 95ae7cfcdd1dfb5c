// Compare: the same instance in two runs, step by step. A and B maps share one colour scale; the
// difference B − A has its own, centred at zero like every map.
import { ApiError, kindParams, type Params } from "./data";
import type { ViewHost } from "./host";
import { errorBox } from "./states";
import { lineChart } from "./charts";
import { decodeMap } from "./codec";
import { SERIES } from "./colors";
import { append, className, clear, fmt, h, pct } from "./dom";
import { colorbar, imageCanvas, mapCanvas } from "./draw";
import { stepLowTrust, trustReason } from "./evidence";
import type { CompareResp, InstancesResp, RunInfo, StepSummary } from "./types";
import { instanceView, viewFor } from "./views";

export function renderCompare(app: ViewHost, parent: HTMLElement): void {
  const runs = app.runs;
  // A saved compare page carries only some ordered pairs (its runs response lists them); a live
  // backend answers any pair.
  const pairs = app.pairs;
  const firsts = pairs ? runs.filter((r) => pairs.some((p) => p[0] === r.run)) : runs;
  const partners = (x: string) => (pairs ? runs.filter((r) => pairs.some((p) => p[0] === x && p[1] === r.run)) : runs);
  // A link names the runs and instance to open with (ids: the shell matched names already).
  const want = app.takeCompareLink();
  const first = want?.a ?? app.run;
  let a = first && firsts.some((r) => r.run === first) ? first : firsts[0].run;
  let b = want?.b && partners(a).some((r) => r.run === want.b) ? want.b : partners(a).find((r) => r.run !== a)!.run;
  let instance: string | null = want?.instance ?? app.instance?.id ?? null;
  // Checked against the instances both runs hold, once they are loaded.
  let wantInstance = want?.instance ?? null;
  // Whose class the maps show (the compare API's `class`). Each run's own prediction by default:
  // where B predicts another class than A (a shortcut model reading a marker), the other modes
  // show B's map of a class B does not predict, or (Grad-CAM) no map at all.
  let cls: string = want?.class ?? CLASS_DEFAULT;
  // A link's class index is checked once the class names have arrived.
  let wantClass = want?.class ?? null;
  // The link leaves out the default class, so the links of before the picker stay as they were.
  const changed = () => app.compareChanged({ a, b, instance: instance ?? undefined,
    class: cls === CLASS_DEFAULT ? undefined : cls });

  const selA = runSelect("compare-run-a", "Run A", firsts);
  const selB = runSelect("compare-run-b", "Run B", partners(a));
  const selI = h("select", { "data-testid": "compare-instance", "aria-label": "Instance" });
  const selC = h("select", { "data-testid": "compare-class", "aria-label": "Class",
    title: "Which class's map each run shows" });
  fillClasses([]);
  const out = h("div", { class: "compare-out" });
  const view = h("section", { class: "compare", "data-testid": "compare-view" },
    h("div", { class: "compare-controls card" },
      h("label", { class: "dv-field" }, h("span", { class: "swatch", style: `background:${SERIES.a}` }), h("span", {}, "A"), selA),
      h("label", { class: "dv-field" }, h("span", { class: "swatch", style: `background:${SERIES.b}` }), h("span", {}, "B"), selB),
      h("label", { class: "dv-field" }, h("span", {}, "Instance"), selI),
      h("label", { class: "dv-field" }, h("span", {}, "Map of"), selC)),
    out);
  parent.appendChild(view);

  function runSelect(testid: string, label: string, options: readonly RunInfo[]): HTMLSelectElement {
    const sel = h("select", { "data-testid": testid, "aria-label": label });
    fill(sel, options);
    return sel;
  }
  /** The named modes, then every class by name (its index is the value the API takes). */
  function fillClasses(names: readonly string[]): void {
    clear(selC);
    for (const [value, text] of CLASS_MODES) append(selC, h("option", { value }, text));
    if (names.length) {
      append(selC, h("optgroup", { label: "Class" },
        ...names.map((n, k) => h("option", { value: String(k) }, `${k}: ${n}`))));
    }
    // Before the names arrive a link's class index is not an option yet: keep it, checked later.
    if (![...selC.options].some((o) => o.value === cls)) {
      append(selC, h("option", { value: cls }, `class ${cls}`));
    }
    selC.value = cls;
  }
  function fill(sel: HTMLSelectElement, options: readonly RunInfo[]): void {
    clear(sel);
    for (const r of options) append(sel, h("option", { value: r.run }, r.name));
  }
  selA.value = a;
  selB.value = b;
  selA.addEventListener("change", () => {
    a = selA.value;
    if (pairs) {
      const bs = partners(a);
      fill(selB, bs);
      if (!bs.some((r) => r.run === b)) b = bs[0].run;
      selB.value = b;
    }
    void loadInstances();
  });
  selB.addEventListener("change", () => { b = selB.value; void loadInstances(); });
  selI.addEventListener("change", () => { instance = selI.value; changed(); void draw(); });
  selC.addEventListener("change", () => { cls = selC.value; changed(); void draw(); });

  function state(title: string, message: string): void {
    clear(out);
    out.append(h("div", { class: "dv-state", "data-testid": "empty-state" }, h("h2", {}, title), h("p", {}, message)));
  }

  // The instances offered are those BOTH runs track, re-read whenever either run changes, so a
  // stale list can never offer an instance one of the runs lacks.
  let token = 0;
  /** The grid's kind, or before one is chosen the first instance kind both runs hold. */
  function kind(): string {
    if (app.kind) return app.kind;
    const held = (run: string) => app.runs.find((r) => r.run === run)?.kinds ?? [];
    const theirs = held(b);
    return held(a).find((k) => theirs.includes(k) && instanceView(k)) ?? "";
  }
  async function loadInstances(): Promise<void> {
    const mine = ++token;
    changed();
    let da: InstancesResp;
    let db: InstancesResp;
    try {
      [da, db] = await Promise.all([
        app.source.get<InstancesResp>("instances", { run: a, ...kindParams(kind()) }),
        app.source.get<InstancesResp>("instances", { run: b, ...kindParams(kind()) }),
      ]);
    } catch (err) {
      if (mine === token) { clear(selI); clear(out); out.append(errorBox(err, "the instances of the two runs")); }
      return;
    }
    if (mine !== token) return;
    if (wantClass !== null && !CLASS_MODES.some(([v]) => v === wantClass)) {
      const k = Number(wantClass);
      if (!/^\d+$/.test(wantClass) || k >= da.class_names.length) {
        app.warnLink("class", wantClass, `expected ${CLASS_MODES.map(([v]) => v).join(", ")} or a class index `
          + `below ${da.class_names.length}`, "each run's own prediction");
        cls = CLASS_DEFAULT;
      } else cls = String(k); // "07" -> "7", the option's value
    }
    wantClass = null;
    fillClasses(da.class_names);
    const inB = new Set(db.instances.map((i) => i.id));
    const common = da.instances.filter((i) => inB.has(i.id)).map((i) => i.id);
    clear(selI);
    for (const id of common) append(selI, h("option", { value: id }, id));
    for (const [run, data] of [[a, da], [b, db]] as const) {
      if (!data.instances.length) {
        instance = null;
        return state(`Run ${run === a ? "A" : "B"} has no ${viewFor(kind())?.label ?? kind()} data`, `“${app.runName(run)}” has no readable explanations.`);
      }
    }
    if (!common.length) {
      instance = null;
      clear(out);
      out.append(h("div", { class: "dv-banner info", "data-testid": "compare-note" },
        "ℹ runs track different instance sets; they share none"));
      out.append(h("div", { class: "dv-state", "data-testid": "empty-state" }, h("h2", {}, "No instance in common"),
        h("p", {}, `“${app.runName(a)}” and “${app.runName(b)}” track no instance in common.`)));
      return;
    }
    if (wantInstance !== null && !common.includes(wantInstance)) {
      app.warnLink("instance", wantInstance, "the two runs share no instance with that id", `“${common[0]}”`);
    }
    wantInstance = null;
    if (!instance || !common.includes(instance)) instance = common[0];
    selI.value = instance;
    changed();
    await draw();
  }

  async function draw(): Promise<void> {
    const mine = ++token;
    if (!instance) return;
    if (a === b) return state("Pick two different runs", "Run A and run B are the same run.");
    clear(out);
    out.append(h("div", { class: "dv-state loading" }, h("div", { class: "spinner" }), "Comparing…"));
    let cmp: CompareResp;
    // A's prediction is the API's default: asked for without `class`, as before the picker (so
    // a saved viewer's default responses answer it too).
    const params: Params = { instance, runs: `${a},${b}`, ...kindParams(kind()), ...(cls === "a" ? {} : { class: cls }) };
    try {
      cmp = await app.source.get<CompareResp>("compare", params);
    } catch (err) {
      if (mine !== token) return;
      clear(out);
      // A saved viewer carries each run's own prediction and A's; say so rather than "not found".
      if (err instanceof ApiError && err.status === 404 && err.message.startsWith("this saved viewer does not include")) {
        const picked = selC.selectedOptions[0]?.textContent ?? cls;
        out.append(h("div", { class: "dv-state", "data-testid": "compare-not-in-snapshot" },
          h("h2", {}, "Not in this saved viewer"),
          h("p", {}, `This saved page holds the maps of each run's own prediction and of A's prediction only, `
            + `not “${picked}”. Pick one of those, or open the runs in TensorBoard or MLflow for every class.`)));
      } else out.append(errorBox(err, "the comparison"));
      return;
    }
    if (mine !== token) return;
    app.addWarnings(cmp.warnings);
    clear(out);
    renderResult(out, cmp, app.runName(a), app.runName(b), cls);
  }

  void loadInstances();
}

/** compare's `class` values with a name, in the picker's order (the default first). */
const CLASS_MODES: readonly (readonly [string, string])[] = [
  ["own", "Each run's own prediction"],
  ["a", "A's prediction"],
  ["b", "B's prediction"],
  ["label", "True label"],
];
const CLASS_DEFAULT = "own";

/** What a side's map is of, in words: "map of 6 (its prediction)". */
function mapOf(names: string[], k: number, s: StepSummary | undefined, other: StepSummary | undefined,
  label: number | null, otherName: string): string {
  const why = [];
  if (s && s.predicted === k) why.push("its prediction");
  else if (other && other.predicted === k) why.push(`${otherName}'s prediction`);
  if (label === k) why.push("the true label");
  return `map of ${className(names, k)}${why.length ? ` (${why.join(", ")})` : ""}`;
}

function renderResult(out: HTMLElement, cmp: CompareResp, nameA: string, nameB: string, mode: string): void {
  const [ra, rb] = cmp.runs;
  const names = cmp.class_names;
  const sa = cmp.per_run[ra] ?? [];
  const sb = cmp.per_run[rb] ?? [];
  const steps = cmp.steps;
  if (cmp.note) out.append(h("div", { class: "dv-banner info", "data-testid": "compare-note" }, "ℹ ", cmp.note));
  if (!steps.length || !cmp.maps.length) {
    out.append(h("div", { class: "dv-state", "data-testid": "empty-state" },
      h("h2", {}, steps.length ? "No maps to compare" : "No common steps"),
      h("p", {}, !steps.length ? "The two runs have no step in common for this instance."
        // e.g. Grad-CAM keeps the maps of its prediction and of the true label only
        : cmp.missing?.length ? `No step has maps of ${CLASS_MODES.find(([v]) => v === mode)?.[1].toLowerCase()
          ?? `class “${className(names, Number(mode))}”`} in both runs: ${cmp.missing[0].reason}. `
          + (mode === "own" ? "" : "Pick “Each run's own prediction” to see each run's map of what it predicts.")
          : "At no common step could both runs' maps be read; see the warnings above.")));
    return;
  }

  const truth = cmp.label;
  // Curves: fidelity, and the probability of the true class (or of A's final prediction).
  const cls = truth ?? sa[sa.length - 1].predicted;
  const probTitle = truth !== null ? `p(true: ${className(names, cls)})` : `p(${className(names, cls)})`;
  const val = (xs: StepSummary[], f: (s: StepSummary) => number | undefined) =>
    xs.map((s) => (typeof f(s) === "number" ? (f(s) as number) : null));
  let selected = steps[steps.length - 1];
  // `sa`, `sb` and the charts follow `steps`; `maps` can be shorter (a step whose record could not
  // be read has no maps), so a map is placed by its step, never by its position in `maps`.
  const index = new Map(steps.map((s, i) => [s, i]));
  const pick = (s: number) => setStep(index.get(s) ?? -1);
  const fid = lineChart({ title: "Fidelity (top-1 agreement)", testid: "compare-fidelity", steps,
    series: [
      { label: `A: ${nameA}`, values: val(sa, (s) => s.fidelity?.top1_agreement), color: SERIES.a },
      { label: `B: ${nameB}`, values: val(sb, (s) => s.fidelity?.top1_agreement), color: SERIES.b },
    ], yRange: [0, 1], selected, onPick: pick });
  const prob = lineChart({ title: `Prediction: ${probTitle}`, testid: "compare-prob", steps,
    series: [
      { label: `A: ${nameA}`, values: val(sa, (s) => s.probs[cls]), color: SERIES.a },
      { label: `B: ${nameB}`, values: val(sb, (s) => s.probs[cls]), color: SERIES.b },
    ], yRange: [0, 1], selected, onPick: pick });

  const slider = h("input", { type: "range", min: 0, max: steps.length - 1, step: 1, value: steps.length - 1,
    "data-testid": "compare-step-slider", "aria-label": "Step" });
  const stepOut = h("output", { class: "step-out" });
  const big = h("div", { class: "compare-maps" });
  slider.addEventListener("input", () => setStep(Number(slider.value)));

  function setStep(i: number): void {
    if (i < 0) return;
    selected = steps[i];
    slider.value = String(i);
    stepOut.textContent = `${selected}  (${i + 1}/${steps.length})`;
    fid.select(selected);
    prob.select(selected);
    strip.querySelectorAll(".strip-col").forEach((c) =>
      c.classList.toggle("selected", Number((c as HTMLElement).dataset.step) === selected));
    const m = cmp.maps.find((x) => x.step === selected);
    clear(big);
    if (!m) {
      const why = cmp.missing?.find((x) => x.step === selected)?.reason;
      big.append(h("p", { class: "muted", "data-testid": "compare-no-maps" }, why
        ? `No maps at step ${selected}: ${why}.`
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
    const panel = (title: string, who: string, s: StepSummary | undefined, canvas: HTMLCanvasElement,
      bar: HTMLElement, testid: string) =>
      h("figure", { class: "cmp-panel", "data-testid": testid },
        h("figcaption", {}, h("b", {}, title), h("span", { class: "muted", title: who }, who)),
        canvas, bar,
        s ? h("div", { class: "cmp-stats" + (stepLowTrust(s) ? " lowfi" : "") },
          `predicted ${className(names, s.predicted)} (${pct(s.probs[s.predicted])}) · fidelity ${fmt(s.fidelity?.top1_agreement)}`,
          stepLowTrust(s) ? ` · ⚠ low trust: ${trustReason(s.trustworthy, s.fidelity)}` : "") : null);
    // The instance first, and both maps over it (dimmed), as in the detail panel: a map means
    // little without what it points at (in the demo, the marker in the corner).
    const image = cmp.image ?? undefined;
    if (image) {
      append(big, h("figure", { class: "cmp-panel", "data-testid": "compare-instance-image" },
        h("figcaption", {}, h("b", {}, "instance"), h("span", { class: "muted" }, cmp.instance)),
        imageCanvas(image, 168)));
    }
    append(big,
      panel("A", nameA, stA, mapCanvas(A, 168, { sharedScale: shared, image }), colorbar(shared), "compare-map-a"),
      panel("B", nameB, stB, mapCanvas(B, 168, { sharedScale: shared, image }), colorbar(shared), "compare-map-b"));
    if (m.diff) {
      const D = decodeMap(m.diff);
      append(big, panel("B − A", "difference", undefined, mapCanvas(D, 168, { cls: "map diff" }),
        colorbar(D.scale, "difference"), "diff-map"));
    } else {
      append(big, h("figure", { class: "cmp-panel cmp-nodiff", "data-testid": "diff-none" },
        h("figcaption", {}, h("b", {}, "B − A")),
        h("p", { class: "muted" }, `Not drawn: A's map is of “${className(names, ca)}” and B's of “${className(names, cb)}”; `
          + "a difference of two classes' maps means nothing. Pick one class above to compare them.")));
    }
    const what = `A: ${mapOf(names, ca, stA, stB, cmp.label, "B")} · B: ${mapOf(names, cb, stB, stA, cmp.label, "A")}`;
    big.prepend(h("p", { class: "muted cmp-class", "data-testid": "compare-classes" },
      `${what} at step ${m.step}; A and B share one colour scale.`));
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
      h("span", { class: "strip-cell" + (lowA ? " lowfi" : "") }, mapCanvas(A, 40, { sharedScale: shared })),
      h("span", { class: "strip-cell" + (lowB ? " lowfi" : "") }, mapCanvas(B, 40, { sharedScale: shared })),
      m.diff ? h("span", { class: "strip-cell" }, mapCanvas(m.diff, 40))
        : h("span", { class: "strip-cell strip-nodiff", title: "A and B show different classes" }, "≠"));
    }));

  out.append(
    h("div", { class: "card" },
      h("div", { class: "slider-row" }, h("span", { class: "muted" }, "Step"), slider, stepOut),
      big),
    h("div", { class: "compare-charts" }, h("div", { class: "card" }, fid.el), h("div", { class: "card" }, prob.el)),
    h("div", { class: "card" }, h("h4", {}, "All common steps"), strip));
  setStep(steps.length - 1);
}
