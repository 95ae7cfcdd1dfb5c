// Detail panel for one (instance, step): every explanation kind the run holds for that instance,
// one tab each (the grid's kind first), each drawn by its kind's view (views/<kind>.ts) with its
// own faithfulness evidence. Its sections fold: the first two (where the model looks, whether
// to trust it) are open, the rest one click away, so the panel fits a laptop's screen.
import type { ViewHost } from "./host";
import { ApiError, kindParams } from "./data";
import { className, h } from "./dom";
import { loadingState, errorBox } from "./states";
import type { Instance } from "./types";
import { instanceView, type InstanceView } from "./views";

/** Sections open when a tab is shown; the others are folded. */
const OPEN_SECTIONS = 2;

// The latest request per slot wins: a slower answer for a step the user already left must not
// replace the newer one. Kept per slot, not per module, so two viewers mounted on one page (each
// with its own slot) never cancel each other.
const tokens = new WeakMap<HTMLElement, number>();

/** The instance kinds the detail panel shows: the grid's kind first, then every other instance
 * kind the run holds that has a registered view. */
export function detailKinds(app: ViewHost): InstanceView[] {
  const held = app.kinds.filter((k) => k.subject === "instance").map((k) => k.kind);
  const order = [app.kind, ...held.filter((k) => k !== app.kind)];
  return order.map((k) => instanceView(k)).filter((v): v is InstanceView => v !== undefined);
}

/** A view's sections as folding <details>: a `.sec` element (a heading, then its body) becomes
 * one, and so does each `.sec` inside a container of several (DeepVID's per-class grids). */
export function foldSections(elements: HTMLElement[], open = OPEN_SECTIONS): HTMLElement[] {
  let count = 0;
  const fold = (sec: HTMLElement): HTMLElement => {
    const heading = sec.querySelector(":scope > h4");
    if (!heading) return sec;
    const details = h("details", { class: "sec fold", "data-testid": "detail-section",
      "data-title": heading.textContent ?? "" });
    if (count++ < open) details.open = true;
    heading.remove();
    // the section itself goes inside, so what marks it (its test id, its data) stays on it
    sec.classList.replace("sec", "sec-body");
    details.append(h("summary", {}, h("h4", {}, ...Array.from(heading.childNodes))), sec);
    return details;
  };
  return elements.map((el) => {
    if (el.classList.contains("sec")) return fold(el);
    if (!el.querySelector(":scope > .sec")) return el;
    const inner = Array.from(el.querySelectorAll<HTMLElement>(":scope > .sec"));
    inner.forEach((sec) => {
      const next = sec.nextSibling; // fold() moves `sec` into its <details>
      el.insertBefore(fold(sec), next);
    });
    return el;
  });
}

export function renderDetail(app: ViewHost, slot: HTMLElement, run: string, inst: Instance, step: number,
  names: string[]): void {
  const mine = (tokens.get(slot) ?? 0) + 1;
  tokens.set(slot, mine);
  const current = () => tokens.get(slot) === mine;
  const views = detailKinds(app);
  const want = views.find((v) => v.kind === app.detailKind) ?? views[0];
  const s = inst.steps.find((x) => x.step === step);
  const close = h("button", { class: "dv-icon-button", title: "Close (Esc)", "aria-label": "Close detail panel",
    "data-testid": "detail-close", onclick: () => app.closeDetail() }, "×");
  const known = inst.label !== null;
  const right = known && s?.predicted === inst.label;
  const tabs = h("div", { class: "detail-tabs", role: "tablist", "aria-label": "Explanation kind" });
  const body = h("div", { class: "detail-body" });
  const panel = h("section", { class: "detail", "data-testid": "detail-panel",
    "data-instance": inst.id, "data-step": step, "data-kinds": views.map((v) => v.kind).join(",") },
  h("div", { class: "detail-head" },
    h("h3", {}, `Step ${step} · `, h("span", { class: "inst-ref", title: inst.id }, inst.id)),
    h("span", { class: "detail-labels" },
      known ? `true ${className(names, inst.label)} · ` : "",
      s ? h("b", { class: known ? (right ? "lab ok" : "lab bad") : "" }, `predicted ${className(names, s.predicted)}`)
        : null),
    close),
  views.length > 1 ? tabs : null, body);
  slot.appendChild(panel);

  const show = (view: InstanceView) => {
    tabs.querySelectorAll("button").forEach((b) => {
      const on = (b as HTMLElement).dataset.kind === view.kind;
      b.classList.toggle("active", on);
      b.setAttribute("aria-selected", String(on));
    });
    panel.dataset.kind = view.kind;
    panel.dataset.loaded = "false";
    body.replaceChildren(loadingState("Loading the full record…", true));
    app.source.get<{ warnings?: string[] }>("record",
      { run, instance: inst.id, step: String(step), ...kindParams(view.kind) }).then(
      (rec) => {
        if (!current() || panel.dataset.kind !== view.kind) return;
        app.addWarnings(rec.warnings);
        body.replaceChildren(h("div", { class: "detail-kind", "data-testid": "detail-kind", "data-kind": view.kind,
          "data-loaded": "true" }, ...foldSections(view.detail(rec, names))));
        panel.dataset.loaded = "true";
      },
      (err) => {
        if (!current() || panel.dataset.kind !== view.kind) return;
        // Kinds run at their own cadence: a kind without a record at this step is not an error.
        body.replaceChildren(views.length > 1 && err instanceof ApiError && err.status === 404
          ? h("p", { class: "muted", "data-testid": "detail-kind-missing" },
            `No ${view.label} explanation of this instance at step ${step}.`)
          : errorBox(err, `the ${view.label} record at step ${step}`));
        panel.dataset.loaded = "true";
      });
  };
  for (const view of views) {
    tabs.appendChild(h("button", { class: "detail-tab", role: "tab", "data-kind": view.kind,
      "data-testid": `detail-tab-${view.kind}`, title: view.description,
      onclick: () => { if (panel.dataset.kind !== view.kind) { app.detailKindChanged(view.kind); show(view); } } },
    view.label));
  }
  show(want);
}
