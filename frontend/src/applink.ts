// The shell's link: what a page address asks the app to show (url.ts reads and writes it), and
// the address of what is on screen. A value that matches nothing does not stop the page: it
// opens the default and the warnings banner names the parameter and the value.
import type { Shell } from "./shell";
import type { Link } from "./url";
import { instanceView, pageViews } from "./views";

/** Take the link's view, runs and kind (checked against the runs listing); the kind, the
 * instance, the step and the panel are checked once the data they belong to has arrived. */
export function applyLink(app: Shell, link: Link): void {
  const pages = pageViews().map((v) => v.kind);
  // Runs A and B name a comparison, even when the link leaves out view=compare.
  if (link.view === undefined && (link.a !== undefined || link.b !== undefined)) app.view = "compare";
  if (link.view !== undefined) {
    if (link.view === "overview" || link.view === "compare") app.view = link.view;
    else if (pages.includes(link.view)) {
      app.view = "page";
      app.pageKind = link.view;
    } else {
      app.warnLink("view", link.view, `expected one of ${["overview", "compare", ...pages].join(", ")}`,
        `the ${app.view === "compare" ? "compare" : "timeline"} view`);
    }
  }
  if (link.kind !== undefined) {
    const grids = [...new Set(app.runs.flatMap((r) => r.kinds ?? []))].filter((k) => instanceView(k));
    // Older backends do not list kinds per run: any kind with a grid view may be there.
    const listed = app.runs.some((r) => r.kinds !== undefined);
    if (instanceView(link.kind) && (!listed || grids.includes(link.kind))) {
      app.kind = link.kind;
      app.want.kind = link.kind;
    } else {
      app.warnLink("kind", link.kind, instanceView(link.kind)
        ? "no run holds that kind" : "not an explanation kind with an instance grid", `“${app.kind}”`);
    }
  }
  const run = (key: "run" | "a" | "b"): string | undefined => {
    const value = link[key];
    if (value === undefined) return undefined;
    const found = app.findRun(value);
    if (found === null) app.warnLink(key, value, "no run has that id or name", "the default run");
    return found ?? undefined;
  };
  const r = run("run");
  if (r !== undefined) app.run = r;
  const a = run("a");
  const b = run("b");
  if (link.map !== undefined) app.gridMap = link.map;
  if (link.metric !== undefined) app.want.metric = link.metric;
  if (app.view === "compare") {
    app.want.compare = { a, b, instance: link.instance, class: link.class, step: link.step };
    return;
  }
  app.want.instance = link.instance ?? null;
  app.want.step = link.step ?? null;
  app.want.panel = link.panel ?? null;
}

/** The link of what is on screen. */
export function currentLink(app: Shell): Link {
  const link: Link = {};
  link.view = app.view === "page" ? app.pageKind ?? undefined : app.view;
  if (app.experiments?.length && app.experiment) link.experiment = app.experiment;
  if (app.view === "compare") return Object.assign(link, app.compareState);
  link.run = app.run ?? undefined;
  if (app.view !== "overview") return link;
  link.instance = app.instance?.id;
  // the instance's last step is left out, so the link follows new steps as they come
  const steps = app.instance?.steps ?? [];
  if (app.step !== null && (app.step !== steps[steps.length - 1]?.step || app.detailKind !== null)) {
    link.step = String(app.step);
  }
  if (app.detailKind !== null) link.panel = app.detailKind;
  // the kind only when it is not the run's first (what a link without it opens)
  if (app.kind && app.kind !== app.gridKinds()[0]?.kind) link.kind = app.kind;
  if (app.gridMap) link.map = app.gridMap;
  if (app.metric) link.metric = app.metric;
  return link;
}
