// Compare: the same instance in two runs, step by step, for one explanation kind. This module is
// the controls (runs A and B, the kind, the instance, whose class the maps show) and the loading;
// compare_result.ts draws an answer. A new answer replaces the old one only when it is in: the
// old one stays, dimmed, meanwhile (a "Map of" or kind change never blanks the view).
import { ApiError, kindParams, type Params } from "./data";
import type { ViewHost } from "./host";
import { errorBox, emptyState, loadingState } from "./states";
import { SERIES } from "./colors";
import { append, clear, h } from "./dom";
import { CLASS_MODES, renderResult } from "./compare_result";
import type { CompareResp, InstancesResp, KindsResp, MetricsResp, RunInfo } from "./types";
import { instanceView, viewFor } from "./views";

const CLASS_DEFAULT = "own";

/** Runs in the order they began (the backend's order where it does not say): the first two are
 * the comparison a page opens with, e.g. the demo's clean run (A) and its shortcut run (B). */
function byStart(runs: readonly RunInfo[]): RunInfo[] {
  return runs.map((r, i) => [r, i] as const)
    .sort(([a, i], [b, j]) => (a.started ?? Infinity) - (b.started ?? Infinity) || i - j).map(([r]) => r);
}

/** A class option's words: the name, with its index only where the two differ ("3: cat"). */
export function classOption(k: number, name: string): string {
  return name === String(k) ? name : `${k}: ${name}`;
}

export function renderCompare(app: ViewHost, parent: HTMLElement): void {
  const runs = app.runs;
  // A saved compare page carries only some ordered pairs (its runs response lists them); a live
  // backend answers any pair.
  const pairs = app.pairs;
  const oldest = byStart(runs);
  const firsts = pairs ? oldest.filter((r) => pairs.some((p) => p[0] === r.run)) : oldest;
  const partners = (x: string) => (pairs ? oldest.filter((r) => pairs.some((p) => p[0] === x && p[1] === r.run))
    : oldest).filter((r) => r.run !== x);
  // A link names the runs and instance to open with (ids: the shell matched names already); else
  // the timeline's run against the oldest other run, else the two oldest runs.
  const want = app.takeCompareLink();
  const first = want?.a ?? app.run;
  let a = first && firsts.some((r) => r.run === first) ? first : firsts[0].run;
  let b = want?.b && partners(a).some((r) => r.run === want.b) ? want.b : partners(a)[0].run;
  let instance: string | null = want?.instance ?? app.instance?.id ?? null;
  let wantInstance = want?.instance ?? null; // checked against the instances both runs hold
  // Whose class the maps show (the compare API's `class`). Each run's own prediction by default:
  // where B predicts another class than A (a shortcut model reading a marker), the other modes
  // show B's map of a class B does not predict, or (Grad-CAM) no map at all.
  let cls: string = want?.class ?? CLASS_DEFAULT;
  let wantClass = want?.class ?? null; // a link's class index is checked once names arrive
  let step: number | null = null;
  let wantStep = want?.step ?? null;
  let kind = "";
  // The last common step is left out of the link, so the link follows new steps as they come.
  let lastStep: number | null = null;
  const changed = () => app.compareChanged({ a, b, instance: instance ?? undefined,
    class: cls === CLASS_DEFAULT ? undefined : cls,
    step: step === null || step === lastStep ? undefined : String(step),
    ...(kind && kind !== commonKinds()[0] ? { kind } : {}) });

  const selA = runSelect("compare-run-a", "Run A", firsts);
  const selB = runSelect("compare-run-b", "Run B", partners(a));
  const selI = h("select", { "data-testid": "compare-instance", "aria-label": "Instance" });
  const selC = h("select", { "data-testid": "compare-class", "aria-label": "Map of",
    title: "Which class's map each run shows" });
  const kinds = h("div", { class: "dv-kind-switch", role: "radiogroup", "aria-label": "Explanation kind",
    "data-testid": "compare-kind-switch" });
  const linkA = h("span", {});
  const linkB = h("span", {});
  fillClasses([]);
  const out = h("div", { class: "compare-out" });
  const view = h("section", { class: "compare", "data-testid": "compare-view" },
    h("div", { class: "compare-controls card" },
      h("label", { class: "dv-field" }, h("span", { class: "swatch", style: `background:${SERIES.a}` }), h("span", {}, "A"),
        selA, linkA),
      h("label", { class: "dv-field" }, h("span", { class: "swatch", style: `background:${SERIES.b}` }), h("span", {}, "B"),
        selB, linkB),
      kinds,
      h("label", { class: "dv-field" }, h("span", {}, "Instance"), selI),
      h("label", { class: "dv-field" }, h("span", {}, "Map of"), selC)),
    out);
  parent.appendChild(view);

  function runSelect(testid: string, label: string, options: readonly RunInfo[]): HTMLSelectElement {
    const sel = h("select", { "data-testid": testid, "aria-label": label });
    fill(sel, options);
    return sel;
  }
  function fill(sel: HTMLSelectElement, options: readonly RunInfo[]): void {
    clear(sel);
    for (const r of options) append(sel, h("option", { value: r.run, title: r.name }, r.name));
  }
  /** The named modes, then every class by name (its index is the value the API takes). */
  function fillClasses(names: readonly string[]): void {
    clear(selC);
    for (const [value, text] of CLASS_MODES) append(selC, h("option", { value }, text));
    if (names.length) {
      append(selC, h("optgroup", { label: "Class" },
        ...names.map((n, k) => h("option", { value: String(k) }, classOption(k, n)))));
    }
    // Before the names arrive a link's class index is not an option yet: keep it, checked later.
    if (![...selC.options].some((o) => o.value === cls)) append(selC, h("option", { value: cls }, `class ${cls}`));
    selC.value = cls;
  }
  /** Instance kinds with a grid view that both runs hold, in the backend's order. */
  function commonKinds(): string[] {
    const held = (run: string) => app.runs.find((r) => r.run === run)?.kinds;
    const ka = held(a);
    const kb = held(b);
    if (!ka || !kb) return app.kind ? [app.kind] : []; // an older backend: the grid's kind
    return ka.filter((k) => kb.includes(k) && instanceView(k));
  }
  function fillKinds(): void {
    const common = commonKinds();
    if (!common.includes(kind)) kind = common.includes(app.kind) ? app.kind : (common[0] ?? "");
    clear(kinds);
    append(kinds, h("span", { class: "muted" }, "Explanation"));
    for (const k of common) {
      const v = viewFor(k);
      append(kinds, h("button", { class: "dv-kind" + (k === kind ? " active" : ""), role: "radio",
        "aria-checked": String(k === kind), "data-testid": `compare-kind-${k}`, title: v?.description ?? k,
        disabled: common.length < 2, onclick: () => { if (k !== kind) { kind = k; fillKinds(); void loadInstances(); } } },
      v?.label ?? k));
    }
  }
  function runLinks(): void {
    const link = (run: string) => {
      const url = app.runs.find((r) => r.run === run)?.url;
      return url ? h("a", { class: "dv-out", href: url, target: "_top", title: "This run's page in MLflow" }, "↗") : "";
    };
    linkA.replaceChildren(link(a));
    linkB.replaceChildren(link(b));
  }
  selA.value = a;
  selB.value = b;
  selA.addEventListener("change", () => {
    a = selA.value;
    const bs = partners(a);
    fill(selB, bs);
    if (!bs.some((r) => r.run === b)) b = bs[0].run;
    selB.value = b;
    void loadInstances();
  });
  selB.addEventListener("change", () => { b = selB.value; void loadInstances(); });
  selI.addEventListener("change", () => { instance = selI.value; step = null; void draw(); });
  selC.addEventListener("change", () => { cls = selC.value; void draw(); });

  function state(el: HTMLElement): void {
    out.classList.remove("refreshing");
    out.replaceChildren(el);
  }

  // The instances offered are those BOTH runs track, re-read whenever either run changes, so a
  // stale list can never offer an instance one of the runs lacks.
  let token = 0;
  async function loadInstances(): Promise<void> {
    const mine = ++token;
    fillKinds();
    runLinks();
    changed();
    let da: InstancesResp;
    let db: InstancesResp;
    try {
      [da, db] = await Promise.all([
        app.source.get<InstancesResp>("instances", { run: a, ...kindParams(kind) }),
        app.source.get<InstancesResp>("instances", { run: b, ...kindParams(kind) }),
      ]);
    } catch (err) {
      if (mine === token) { clear(selI); state(errorBox(err, "the instances of the two runs")); }
      return;
    }
    if (mine !== token) return;
    if (!kind && da.kind) kind = da.kind;
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
        return state(emptyState(`Run ${run === a ? "A" : "B"} has no ${viewFor(kind)?.label ?? kind} data`,
          `“${app.runName(run)}” has no readable explanations.`));
      }
    }
    if (!common.length) {
      instance = null;
      state(h("div", {}, h("div", { class: "dv-banner info", "data-testid": "compare-note" },
        "ℹ runs track different instance sets; they share none"),
      emptyState("No instance in common", `“${app.runName(a)}” and “${app.runName(b)}” track no instance in common.`)));
      return;
    }
    if (wantInstance !== null && !common.includes(wantInstance)) {
      app.warnLink("instance", wantInstance, "the two runs share no instance with that id", `“${common[0]}”`);
    }
    wantInstance = null;
    if (!instance || !common.includes(instance)) instance = common[0];
    selI.value = instance;
    await draw();
  }

  async function draw(): Promise<void> {
    const mine = ++token;
    if (!instance) return;
    if (a === b) return state(emptyState("Pick two different runs", "Run A and run B are the same run."));
    changed();
    // Keep what is on screen, dimmed, until the new answer is in.
    if (out.firstChild) out.classList.add("refreshing");
    else out.replaceChildren(loadingState("Comparing…"));
    // A's prediction is the API's default: asked for without `class`, as before the picker (so
    // a saved viewer's default responses answer it too).
    const params: Params = { instance, runs: `${a},${b}`, ...kindParams(kind), ...(cls === "a" ? {} : { class: cls }) };
    const extras = Promise.all([
      app.source.get<KindsResp>("kinds", { run: a }).catch(() => null),
      app.source.get<MetricsResp>("metrics", { run: a }).catch(() => null),
      app.source.get<MetricsResp>("metrics", { run: b }).catch(() => null),
    ]);
    let cmp: CompareResp;
    try {
      cmp = await app.source.get<CompareResp>("compare", params);
    } catch (err) {
      if (mine !== token) return;
      // A saved viewer carries each run's own prediction and A's; say so rather than "not found".
      if (err instanceof ApiError && err.status === 404 && err.message.startsWith("this saved viewer does not include")) {
        const picked = selC.selectedOptions[0]?.textContent ?? cls;
        state(h("div", { class: "dv-state", "data-testid": "compare-not-in-snapshot" },
          h("h2", {}, "Not in this saved viewer"),
          h("p", {}, `This saved page holds the maps of each run's own prediction and of A's prediction only, `
            + `not “${picked}”. Pick one of those, or open the runs in TensorBoard or MLflow for every class.`)));
      } else state(errorBox(err, "the comparison"));
      return;
    }
    const [kindsA, metricsA, metricsB] = await extras;
    if (mine !== token) return;
    app.addWarnings(cmp.warnings);
    if (wantStep !== null) {
      const asked = /^-?\d+$/.test(wantStep) ? Number(wantStep) : NaN;
      if (cmp.steps.includes(asked)) step = asked;
      else if (cmp.steps.length) {
        app.warnLink("step", wantStep, `the two runs share no step ${wantStep}`, `step ${cmp.steps[cmp.steps.length - 1]}`);
      }
      wantStep = null;
    }
    out.classList.remove("refreshing");
    out.replaceChildren();
    lastStep = cmp.steps.length ? cmp.steps[cmp.steps.length - 1] : null;
    renderResult(out, cmp, {
      nameA: app.runName(a), nameB: app.runName(b), mode: cls, kind,
      info: kindsA?.kinds.find((k) => k.kind === kind) ?? null,
      metrics: [metricsA?.metrics ?? [], metricsB?.metrics ?? []],
      step,
      onStep: (s) => { step = s; changed(); },
    });
    prefetch();
  }

  /** The same comparison in the other kinds, fetched while the user looks at this one, so a
   * kind switch finds its answer ready. */
  function prefetch(): void {
    if (app.source.saved || !instance) return;
    for (const k of commonKinds()) {
      if (k === kind) continue;
      for (const run of [a, b]) app.source.get("instances", { run, kind: k }).catch(() => undefined);
      app.source.get<CompareResp>("compare", { instance, runs: `${a},${b}`, kind: k, ...(cls === "a" ? {} : { class: cls }) })
        .catch(() => undefined);
    }
  }

  void loadInstances();
}
