// Detail panel for one (instance, step): every explanation kind the run holds for that instance,
// side by side, each in its own column drawn by its kind's view (views/<kind>.ts) with its own
// faithfulness evidence. The kind the grid shows comes first.
import type { ViewHost } from "./host";
import { ApiError, kindParams } from "./data";
import { h } from "./dom";
import { errorBox } from "./states";
import { instanceView, type InstanceView } from "./views";

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

export function renderDetail(app: ViewHost, slot: HTMLElement, run: string, instance: string, step: number,
  names: string[]): void {
  const mine = (tokens.get(slot) ?? 0) + 1;
  tokens.set(slot, mine);
  const current = () => tokens.get(slot) === mine;
  const close = h("button", { class: "dv-icon-button", title: "Close (Esc)", "aria-label": "Close detail panel",
    "data-testid": "detail-close", onclick: () => app.closeDetail() }, "×");
  const views = detailKinds(app);
  const columns = h("div", { class: "detail-kinds", style: `--kinds:${Math.max(1, views.length)}` });
  const panel = h("section", { class: "card detail", "data-testid": "detail-panel",
    "data-instance": instance, "data-step": step, "data-kinds": views.map((v) => v.kind).join(",") },
    h("div", { class: "card-head" }, h("h3", {}, `Step ${step} · `, h("span", { class: "inst-ref" }, instance)), close),
    columns);
  slot.appendChild(panel);

  const loads = views.map((view) => {
    const body = h("div", { class: "detail-body" },
      h("div", { class: "dv-state loading small" }, h("div", { class: "spinner" }), "Loading the full record…"));
    const column = h("section", { class: "detail-kind", "data-testid": "detail-kind", "data-kind": view.kind },
      views.length > 1 ? h("h3", { class: "detail-kind-title", title: view.description }, view.label) : null, body);
    columns.appendChild(column);
    return app.source.get<{ warnings?: string[] }>("record",
      { run, instance, step: String(step), ...kindParams(view.kind) }).then(
      (rec) => {
        if (!current()) return;
        app.addWarnings(rec.warnings);
        body.textContent = "";
        body.append(...view.detail(rec, names));
        column.dataset.loaded = "true";
      },
      (err) => {
        if (!current()) return;
        body.textContent = "";
        // Kinds run at their own cadence: a kind without a record at this step is not an error.
        if (views.length > 1 && err instanceof ApiError && err.status === 404) {
          body.append(h("p", { class: "muted", "data-testid": "detail-kind-missing" },
            `No ${view.label} explanation of this instance at step ${step}.`));
        } else {
          body.append(errorBox(err, `the ${view.label} record at step ${step}`));
        }
      },
    );
  });
  void Promise.allSettled(loads).then(() => {
    if (current()) panel.dataset.loaded = "true";
  });
}
