// The shell's toolbar: the experiment and run pickers, the view tabs, a link to the run's page in
// the tracking server's own UI (MLflow), and Reload. The run picker is left out of Compare runs,
// which picks its own runs A and B.
import type { Shell } from "./shell";
import { append, clear, h } from "./dom";
import { pageViews } from "./views";

/** The page title without a leading "DeepVID" (the brand says it already). */
export function shortTitle(title: string | undefined): string {
  return (title ?? "").replace(/^\s*DeepVID\s*[:·-]?\s*/i, "").trim();
}

export function renderToolbar(app: Shell, bar: HTMLElement): void {
  clear(bar);
  const title = shortTitle(app.options.title);
  append(bar, h("div", { class: "dv-brand" }, h("strong", {}, "DeepVID"),
    title ? h("span", { class: "dv-title", "data-testid": "page-title" }, title) : null));

  if (app.experiments && app.experiments.length) {
    const sel = h("select", { "data-testid": "experiment-select", "aria-label": "Experiment" });
    for (const e of app.experiments) {
      append(sel, h("option", { value: e.id, selected: e.id === app.experiment }, e.name));
    }
    sel.addEventListener("change", () => app.pickExperiment(sel.value));
    append(bar, h("label", { class: "dv-field" }, h("span", {}, "Experiment"), sel));
  }

  if (app.runs.length && app.view !== "compare") {
    const sel = h("select", { "data-testid": "run-select", "aria-label": "Run" });
    for (const r of app.runs) {
      append(sel, h("option", { value: r.run, selected: r.run === app.run,
        title: `${r.instances} instances × ${r.steps} steps` }, r.name));
    }
    sel.addEventListener("change", () => app.pickRun(sel.value));
    const info = app.runs.find((r) => r.run === app.run);
    append(bar, h("label", { class: "dv-field" }, h("span", {}, "Run"), sel),
      info ? h("span", { class: "muted dv-run-size", "data-testid": "run-size" },
        `${info.instances} instances × ${info.steps} steps`) : null,
      info?.url ? h("a", { class: "dv-out", href: info.url, target: "_top", "data-testid": "run-page-link",
        title: "This run's page in MLflow (metrics, parameters, artifacts)" }, "MLflow run ↗") : null);
  }

  const tabs = h("nav", { class: "dv-tabs", role: "tablist" });
  const tab = (id: string, active: boolean, label: string, onClick: () => void, title?: string) =>
    h("button", {
      class: "dv-tab" + (active ? " active" : ""),
      role: "tab",
      "aria-selected": String(active),
      "data-testid": `tab-${id}`,
      title,
      onclick: onClick,
    }, label);
  append(tabs,
    tab("overview", app.view === "overview", "Timeline",
      () => void app.selectRun(app.run ?? app.runs[0]?.run)),
    tab("compare", app.view === "compare", "Compare runs", () => app.showCompare()),
    // Kinds that explain layers or classes, not instances, get their own entries.
    ...pageViews().map((v) => tab(v.kind, app.view === "page" && app.pageKind === v.kind, v.label, () => {
      if (!app.run && app.runs.length) app.run = app.runs[0].run;
      void app.showPage(v.kind);
    }, v.description)));
  const reload = h("button", { class: "dv-button", "data-testid": "reload", title: "Fetch new steps",
    onclick: () => app.reload() }, "⟳ Reload");
  append(bar, app.runs.length ? tabs : null, h("span", { class: "dv-spacer" }), reload);
}
