// The timeline page of one run and kind: the kind switch and what the cells show, the legend,
// the run's metric on the grid's step axis, the grid, the instance panel, and the detail drawer
// beside the grid. It draws the shell's selection (app.instance, app.step, app.detailKind); the
// shell (app.ts) owns that state and the loading.
import { alertInstance, alertsBanner, markAlertSteps } from "./alerts";
import { renderDetail } from "./detail";
import { append, h } from "./dom";
import { drawer, type Drawer } from "./drawer";
import { renderInspector, type Inspector } from "./inspector";
import { legend } from "./legend";
import { metricStrip, type MetricStrip } from "./metric_strip";
import { renderOverview, type Overview } from "./overview";
import type { Shell } from "./shell";
import { errorBox, loadingState } from "./states";
import type { AlertsResp, InstancesResp, KindInfo, MetricsResp } from "./types";
import { instanceView, viewFor } from "./views";

export class TimelinePage {
  private readonly overview: Overview;
  private readonly drawer: Drawer;
  private readonly sidebar: HTMLElement;
  private inspector: Inspector | null = null;
  private strip: MetricStrip | null = null;
  private live = true;

  constructor(private readonly app: Shell, body: HTMLElement, private readonly data: InstancesResp,
    metrics: Promise<MetricsResp>, alerts: Promise<AlertsResp>, private readonly top: () => number) {
    const view = instanceView(app.kind);
    const maps = (view?.cellMaps ?? []).filter((m) => this.hasMap(m.key));
    if (app.gridMap !== null && maps.length && !maps.some((m) => m.key === app.gridMap)) {
      app.warnLink("map", app.gridMap, `expected one of ${maps.map((m) => m.key).join(", ")}`, `“${maps[0].label}”`);
      app.gridMap = null;
    }
    const map = maps.find((m) => m.key === app.gridMap) ?? maps[0] ?? null;
    const main = h("section", { class: "dv-main" });
    this.sidebar = h("aside", { class: "dv-side" });
    this.drawer = drawer(() => app.closeDetail());
    body.replaceChildren(h("div", { class: "dv-split" }, main, this.sidebar), this.drawer.el);
    append(main, h("div", { class: "dv-grid-controls" }, this.kindSwitch(), this.mapPicker(maps, map?.key ?? null)),
      legend(view, map?.legend));
    this.overview = renderOverview(app, main, data, map?.key ?? null);
    // the metric strip sits right on top of the grid, its step axis on the grid's columns
    const slot = h("div", { class: "metric-slot" });
    this.overview.scroller.before(slot);
    this.renderSidebar();
    // the drift alerts first: above everything, and marked on the grid's step axis
    const alertSlot = h("div", { class: "alert-slot" });
    main.prepend(alertSlot);
    alerts.then((resp) => {
      if (!this.live) return;
      app.addWarnings(resp.warnings);
      const banner = alertsBanner(resp, (a) => {
        const id = alertInstance(a);
        if (id !== null && data.instances.some((i) => i.id === id)) app.selectInstance(id, a.step);
        else app.selectStep(a.step);
      });
      if (banner) alertSlot.replaceChildren(banner);
      markAlertSteps(this.overview.scroller, resp);
    }, () => undefined);
    metrics.then((resp) => {
      if (!this.live) return;
      app.addWarnings(resp.warnings);
      this.showStrip(slot, resp);
    }, () => {
      if (this.live) this.showStrip(slot, { run: data.run, metrics: [], warnings: [] });
    });
  }

  /** The page was left: late answers draw nothing. */
  dispose(): void {
    this.live = false;
    this.drawer.hide();
  }

  /** Draw the shell's selection: the grid's marks, the panels' step, the open detail. */
  showSelection(): void {
    const app = this.app;
    this.overview.highlight(app.instance?.id ?? null, app.step);
    this.inspector?.select(app.step);
    this.strip?.select(app.step);
    const d = this.drawer;
    if (app.detailKind === null || !app.instance || app.step === null) return;
    if (!d.open) d.show(this.top());
    d.slot.replaceChildren();
    renderDetail(app, d.slot, this.data.run, app.instance, app.step, this.data.class_names);
    // The drawer covers the right of the page: keep the selected cell visible beside it.
    const edge = d.edge();
    this.overview.reveal(app.instance.id, app.step, edge.left, edge.width);
  }

  closeDetail(): void {
    this.drawer.hide();
    this.overview.reveal(this.app.instance?.id ?? "", this.app.step ?? -1, window.innerWidth, 0);
  }

  /** Whether the run's summaries have cell map `key` (the overview names them; older backends
   * send whole summaries instead). */
  private hasMap(key: string): boolean {
    if (this.data.maps) return this.data.maps.includes(key);
    const s = this.data.instances[0]?.steps[0];
    return s !== undefined && key in s;
  }

  private showStrip(slot: HTMLElement, resp: MetricsResp): void {
    const app = this.app;
    const want = app.want.metric;
    app.want.metric = null;
    const known = (name: string | null) => name !== null && resp.metrics.some((m) => m.name === name);
    if (want !== null && !known(want)) {
      app.warnLink("metric", want, resp.metrics.length ? "the run logged no metric of that name"
        : "the run logged no metrics", "the default");
    }
    if (known(want)) app.metric = want;
    this.strip = metricStrip(resp.metrics, this.overview.steps, this.overview.scroller, app.metric, (name) => {
      app.metric = name;
      this.showStrip(slot, resp);
      app.syncLink();
    });
    slot.replaceChildren(this.strip.el);
    this.strip.select(app.step);
  }

  /** The instance panel of the selected instance, from its whole summaries (its timeline). */
  renderSidebar(): void {
    const app = this.app;
    const side = this.sidebar;
    const inst = app.instance;
    if (!inst) return;
    this.inspector = null;
    side.replaceChildren(loadingState(`Loading ${inst.id}…`, true));
    app.timeline(inst.id).then((tl) => {
      if (app.instance !== inst || !this.live) return;
      app.addWarnings(tl.warnings);
      side.replaceChildren();
      this.inspector = renderInspector(app, side, inst, tl, this.data.class_names);
      this.inspector.select(app.step);
    }, (err) => {
      if (app.instance === inst && this.live) side.replaceChildren(errorBox(err, `the timeline of ${inst.id}`));
    });
  }

  /** The grid's kind switch: one button per instance kind the run holds. */
  private kindSwitch(): HTMLElement {
    const app = this.app;
    const grid = app.gridKinds();
    const bar = h("div", { class: "dv-kind-switch", role: "radiogroup", "aria-label": "Explanation kind",
      "data-testid": "kind-switch" }, h("span", { class: "muted" }, "Explanation"));
    for (const k of grid.length ? grid : [{ kind: app.kind } as KindInfo]) {
      const view = viewFor(k.kind);
      const on = k.kind === app.kind;
      append(bar, h("button", {
        class: "dv-kind" + (on ? " active" : ""), role: "radio", "aria-checked": String(on),
        "data-testid": `kind-${k.kind}`, title: view?.description ?? k.kind,
        disabled: grid.length < 2,
        onclick: () => { if (!on && app.run) void app.selectRun(app.run, k.kind); },
      }, view?.label ?? k.kind));
    }
    return bar;
  }

  /** What the cells show, when the kind can show more than one map (DeepVID: contribution or
   * weight). */
  private mapPicker(maps: readonly { key: string; label: string }[], current: string | null): HTMLElement | null {
    if (maps.length < 2) return null;
    const app = this.app;
    const sel = h("select", { "data-testid": "map-select", "aria-label": "Cells show" },
      ...maps.map((m) => h("option", { value: m.key, selected: m.key === current }, m.label)));
    sel.addEventListener("change", () => {
      app.gridMap = sel.value;
      if (app.run) void app.selectRun(app.run, app.kind);
    });
    return h("label", { class: "dv-field" }, h("span", {}, "Cells show"), sel);
  }
}
