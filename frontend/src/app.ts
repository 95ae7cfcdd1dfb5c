// Application shell: state, toolbar (run selector, view tabs, reload), banners, empty/error states.
// Views live in their own modules and read everything through `app.source`.
import { kindParams, type DataSource } from "./data";
import { append, clear, h } from "./dom";
import { renderCompare } from "./compare";
import { detailKinds, renderDetail } from "./detail";
import type { ViewHost } from "./host";
import { renderInspector, type Inspector } from "./inspector";
import { legend } from "./legend";
import { renderOverview, type Overview } from "./overview";
import { errorBox } from "./states";
import type { Instance, InstancesResp, KindInfo, KindsResp, RunInfo, RunsResp } from "./types";
import { linkWarning, type CompareLink, type Link, type LinkKey } from "./url";
import { instanceView, pageViews, viewFor } from "./views";
import { warningsSummary } from "./warnings";

/** "page": the top-level view of a kind that is not an instances x steps grid (App.pageKind). */
export type View = "overview" | "compare" | "page";

export interface AppOptions {
  title?: string;
  view?: View;
  run?: string;
  /** A link to open (url.ts): view, run, compare's runs and instance, grid kind, experiment.
   * Runs and experiments match by id or name; a value that matches nothing is named in the
   * warnings banner and the default is shown. */
  link?: Link;
  /** How the link's parameters are spelled in the address ("deepvid_" in TensorBoard), so a
   * warning names the parameter the user typed. */
  linkPrefix?: string;
  /** Called with the link of what is on screen whenever it changes (keeps the address bar a
   * shareable link). */
  onLink?: (link: Link) => void;
}

export class App implements ViewHost {
  readonly root: HTMLElement;
  private readonly toolbar: HTMLElement;
  private readonly banners: HTMLElement;
  private readonly body: HTMLElement;
  runs: RunInfo[] = [];
  experiment: string | null = null;
  run: string | null = null;
  data: InstancesResp | null = null;
  instance: Instance | null = null;
  step: number | null = null;
  detailOpen = false;
  view: View;
  /** The grid's kind ("" until a run is shown: then the run's first), the kinds the run holds,
   * and the kind a "page" view shows. */
  kind = "";
  kinds: KindInfo[] = [];
  pageKind: string | null = null;
  private split: HTMLElement | null = null;
  private overview: Overview | null = null;
  private inspector: Inspector | null = null;
  private detailEl: HTMLElement | null = null;
  private sidebar: HTMLElement | null = null;
  private warnings = new Set<string>();
  /** The link not yet applied: applied once, when the first runs listing arrives. */
  private pending: Link | null;
  /** A link's grid kind and instance, checked (and warned about) once the run's data is in. */
  private linkKind: string | null = null;
  private linkInstance: string | null = null;
  /** What compare shows (for the address), and what a link asks it to show first. */
  private compareState: CompareLink = {};
  private compareWant: CompareLink | null = null;

  constructor(
    host: HTMLElement,
    readonly source: DataSource,
    readonly options: AppOptions = {},
  ) {
    this.view = options.view ?? "overview";
    this.pending = options.link && Object.keys(options.link).length ? options.link : null;
    this.toolbar = h("header", { class: "dv-toolbar" });
    this.banners = h("div", { class: "dv-banners" });
    this.body = h("main", { class: "dv-body" });
    this.root = h("div", { class: "dv-root", "data-testid": "deepvid-app" },
      this.toolbar, this.banners, this.body);
    clear(host);
    host.appendChild(this.root);
  }

  // ---- loading ------------------------------------------------------------------------------
  async start(): Promise<void> {
    this.loading("Loading runs…");
    let resp: RunsResp;
    const link = this.pending;
    try {
      const params: Record<string, string> = this.experiment ? { experiment: this.experiment } : {};
      resp = await this.source.get<RunsResp>("runs", params);
      if (link?.experiment !== undefined) resp = await this.linkExperiment(link.experiment, resp);
    } catch (err) {
      this.renderToolbar();
      return this.fail(err, "runs");
    }
    // The link is followed once: a later start (another experiment picked, Reload) keeps what
    // the user chose since.
    this.pending = null;
    this.addWarnings(resp.warnings);
    this.runs = resp.runs ?? [];
    this.experiments = resp.experiments ?? null;
    this.pairs = resp.pairs?.length ? resp.pairs : null;
    if (resp.experiment !== undefined) this.experiment = resp.experiment;
    this.renderToolbar();
    if (this.runs.length === 0) {
      return this.empty(
        "No DeepVID data yet",
        "Nothing has been logged yet. Add DeepVIDCallback to your training loop (or call " +
          "deepvid_plugin.tensorboard.write_record) and press Reload once the first step is written.",
      );
    }
    if (link) this.applyLink(link);
    const run = this.findRun(this.run ?? this.options.run) ?? this.runs[0].run;
    // With a single run there is nothing to compare: open its timeline rather than an empty
    // comparison (the Compare tab still explains why when clicked).
    if (this.view === "compare" && this.runs.length >= 2) return this.showCompare();
    if (this.view === "page" && this.pageKind) {
      this.run = run;
      return this.showPage(this.pageKind);
    }
    await this.selectRun(run);
  }

  // ---- links --------------------------------------------------------------------------------
  /** A run by id, else by name (MLflow users copy names; several runs may share one: the first
   * listed, the newest, wins). */
  findRun(value: string | null | undefined): string | null {
    if (value === null || value === undefined) return null;
    return (this.runs.find((r) => r.run === value) ?? this.runs.find((r) => r.name === value))?.run ?? null;
  }

  /** Name a link parameter that matched nothing in the warnings banner. */
  warnLink(key: LinkKey, value: string, problem: string, fallback: string): void {
    this.addWarnings([linkWarning((this.options.linkPrefix ?? "") + key, value, problem, fallback)]);
  }

  /** The runs of the link's experiment (by id, else name); the default one's when none matches. */
  private async linkExperiment(value: string, resp: RunsResp): Promise<RunsResp> {
    const list = resp.experiments ?? [];
    const found = list.find((e) => e.id === value) ?? list.find((e) => e.name === value);
    if (!found) {
      const current = list.find((e) => e.id === resp.experiment);
      this.warnLink("experiment", value,
        list.length ? "no experiment has that id or name" : "this page has no experiments to pick from",
        current ? `experiment “${current.name}”` : "the default");
      return resp;
    }
    if (found.id === resp.experiment) return resp;
    this.experiment = found.id;
    return this.source.get<RunsResp>("runs", { experiment: found.id });
  }

  /** Take the link's view, runs and kind (checked against the runs listing); the kind and the
   * instance are checked once the data they belong to has arrived. */
  private applyLink(link: Link): void {
    const pages = pageViews().map((v) => v.kind);
    // Runs A and B name a comparison, even when the link leaves out view=compare.
    if (link.view === undefined && (link.a !== undefined || link.b !== undefined)) this.view = "compare";
    if (link.view !== undefined) {
      if (link.view === "overview" || link.view === "compare") this.view = link.view;
      else if (pages.includes(link.view)) {
        this.view = "page";
        this.pageKind = link.view;
      } else {
        this.warnLink("view", link.view, `expected one of ${["overview", "compare", ...pages].join(", ")}`,
          `the ${this.view === "compare" ? "compare" : "timeline"} view`);
      }
    }
    if (link.kind !== undefined) {
      const grids = [...new Set(this.runs.flatMap((r) => r.kinds ?? []))].filter((k) => instanceView(k));
      // Older backends do not list kinds per run: any kind with a grid view may be there.
      const listed = this.runs.some((r) => r.kinds !== undefined);
      if (instanceView(link.kind) && (!listed || grids.includes(link.kind))) {
        this.kind = link.kind;
        this.linkKind = link.kind;
      } else {
        this.warnLink("kind", link.kind, instanceView(link.kind)
          ? "no run holds that kind" : "not an explanation kind with an instance grid", `“${this.kind}”`);
      }
    }
    const run = (key: "run" | "a" | "b"): string | undefined => {
      const value = link[key];
      if (value === undefined) return undefined;
      const found = this.findRun(value);
      if (found === null) this.warnLink(key, value, "no run has that id or name", "the default run");
      return found ?? undefined;
    };
    const r = run("run");
    if (r !== undefined) this.run = r;
    const a = run("a");
    const b = run("b");
    this.linkInstance = link.instance ?? null;
    if (this.view === "compare") {
      this.compareWant = { a, b, instance: link.instance, class: link.class };
      this.linkInstance = null;
    }
  }

  /** Compare's first runs and instance from a link (once), else null. */
  takeCompareLink(): CompareLink | null {
    const want = this.compareWant;
    this.compareWant = null;
    return want;
  }

  /** Compare moved to other runs or another instance: the address follows. */
  compareChanged(state: CompareLink): void {
    this.compareState = { ...state };
    this.syncLink();
  }

  /** Hand the link of what is on screen to the host page (which writes its address). */
  private syncLink(): void {
    if (!this.options.onLink || this.pending) return;
    const link: Link = {};
    link.view = this.view === "page" ? this.pageKind ?? undefined : this.view;
    if (this.experiments?.length && this.experiment) link.experiment = this.experiment;
    if (this.view === "compare") Object.assign(link, this.compareState);
    else link.run = this.run ?? undefined;
    if (this.view === "overview") link.instance = this.instance?.id;
    // the kind only when it is not the run's first (what a link without it opens)
    if (this.view !== "page" && this.kind && this.kind !== this.gridKinds()[0]?.kind) link.kind = this.kind;
    this.options.onLink(link);
  }

  experiments: { id: string; name: string }[] | null = null;
  /** Run pairs a saved compare page can show (null: any pair, from a live backend). */
  pairs: [string, string][] | null = null;

  /** The kinds `run` holds; an older backend without the `kinds` route holds DeepVID only. */
  private async loadKinds(run: string): Promise<KindInfo[]> {
    try {
      const resp = await this.source.get<KindsResp>("kinds", { run });
      this.addWarnings(resp.warnings);
      return resp.kinds ?? [];
    } catch (err) {
      // 404: an older backend (or a run it cannot find; the instances request then says which).
      if ((err as { status?: number }).status === 404) return [];
      throw err;
    }
  }

  /** Whether `run` is known to hold `kind`: from its kinds when they are loaded, else from the
   * runs listing (`kinds`, absent from older backends: unknown, so the kinds are read first). */
  private holds(run: string, kind: string, runChanged: boolean): boolean {
    if (!runChanged) return this.kinds.some((k) => k.kind === kind);
    return this.runs.find((r) => r.run === run)?.kinds?.includes(kind) ?? false;
  }

  /** Instance kinds of the run that have a grid view, in the backend's order. */
  gridKinds(): KindInfo[] {
    return this.kinds.filter((k) => k.subject === "instance" && instanceView(k.kind));
  }

  async selectRun(run: string, kind?: string): Promise<void> {
    const linkKind = this.linkKind;
    this.linkKind = null;
    const runChanged = run !== this.run || !this.kinds.length;
    this.run = run;
    this.view = "overview";
    this.renderToolbar();
    this.loading(`Loading ${this.runName(run)}…`);
    let data: InstancesResp;
    const want = kind ?? this.kind;
    // Ask for the overview of the wanted kind while the kinds are listed (no extra round trip
    // before the grid), but only when the run is known to hold it: a request for a kind the run
    // lacks is answered 404, which the browser logs in TensorBoard's console.
    const early = this.holds(run, want, runChanged)
      ? this.source.get<InstancesResp>("instances", { run, ...kindParams(want) }) : null;
    early?.catch(() => undefined); // a failure is reported by the await below
    try {
      if (runChanged) this.kinds = await this.loadKinds(run);
      const grid = this.gridKinds().map((k) => k.kind);
      if (this.run !== run) return;
      // A run holding only layer/class kinds (a dissection-only run) has no grid: open its first
      // page rather than asking for a grid it lacks. No kinds at all: an older backend, DeepVID.
      const page = pageViews().find((v) => this.kinds.some((k) => k.kind === v.kind));
      if (!grid.length && page) return this.showPage(page.kind);
      this.kind = grid.includes(want) ? want : (grid[0] ?? "");
      if (linkKind !== null && this.kind !== linkKind) {
        this.warnLink("kind", linkKind, `run “${this.runName(run)}” holds no such kind`, `“${this.kind}”`);
      }
      this.renderToolbar();
      data = await (this.kind === want && early ? early
        : this.source.get<InstancesResp>("instances", { run, ...kindParams(this.kind) }));
    } catch (err) {
      return this.fail(err, "instances");
    }
    if (this.run !== run || this.view !== "overview") return; // the user moved on meanwhile
    this.addWarnings(data.warnings);
    this.data = data;
    if (!this.kind && data.kind) this.kind = data.kind; // the run's first kind, as the API chose
    const label = viewFor(this.kind)?.label ?? this.kind;
    if (!data.instances.length) {
      return this.empty(
        `This run has no ${label} data`,
        `Run “${this.runName(run)}” has no readable ${label} explanations. Check that the ` +
          "callback is attached to this run, or see the warnings above.",
      );
    }
    const wantId = this.linkInstance ?? this.instance?.id;
    const keep = data.instances.find((i) => i.id === wantId) ?? data.instances[0];
    if (this.linkInstance !== null && keep.id !== this.linkInstance) {
      this.warnLink("instance", this.linkInstance, `run “${this.runName(run)}” has no such instance`, `“${keep.id}”`);
    }
    this.linkInstance = null;
    this.instance = keep;
    const steps = keep.steps.map((s) => s.step);
    this.step = this.step !== null && steps.includes(this.step) ? this.step : steps[steps.length - 1];
    this.renderOverviewPage();
    this.syncLink();
  }

  reload(): void {
    this.source.clear();
    this.warnings.clear();
    clear(this.banners);
    void this.start();
  }

  // ---- selection ----------------------------------------------------------------------------
  selectInstance(id: string, step?: number | null): void {
    const inst = this.data?.instances.find((i) => i.id === id);
    if (!inst) return;
    const steps = inst.steps.map((s) => s.step);
    const changed = inst !== this.instance;
    this.instance = inst;
    const want = step ?? this.step;
    this.step = want !== null && steps.includes(want) ? want : steps[steps.length - 1];
    if (changed) {
      this.renderSidebar();
      this.syncLink();
    } else this.syncStep();
  }

  selectStep(step: number): void {
    if (!this.instance || step === this.step) return;
    if (!this.instance.steps.some((s) => s.step === step)) return;
    this.step = step;
    this.syncStep();
  }

  openDetail(id: string, step: number): void {
    this.detailOpen = true;
    this.selectInstance(id, step); // re-renders the detail slot either way
    // The side panel scrolls on its own; bring the freshly opened panel into view.
    this.detailEl?.firstElementChild?.scrollIntoView({ block: "nearest" });
  }

  closeDetail(): void {
    this.detailOpen = false;
    this.refreshDetail();
  }

  private syncStep(): void {
    this.overview?.highlight(this.instance?.id ?? null, this.step);
    this.inspector?.select(this.step);
    this.refreshDetail();
  }

  private refreshDetail(): void {
    if (!this.detailEl) return;
    clear(this.detailEl);
    // Two explanations side by side need more room than the timeline's side panel.
    this.split?.classList.toggle("detail-wide", this.detailOpen && detailKinds(this).length > 1);
    if (!this.detailOpen || !this.instance || this.step === null || !this.run || !this.data) return;
    renderDetail(this, this.detailEl, this.run, this.instance.id, this.step, this.data.class_names);
  }

  // ---- pages --------------------------------------------------------------------------------
  private renderOverviewPage(): void {
    clear(this.body);
    if (!this.data || !this.run) return;
    const main = h("section", { class: "dv-main" });
    this.sidebar = h("aside", { class: "dv-side" });
    this.split = h("div", { class: "dv-split" }, main, this.sidebar);
    append(this.body, this.split);
    append(main, this.kindSwitch(), legend(instanceView(this.kind)?.cellLegend));
    this.overview = renderOverview(this, main, this.data);
    this.renderSidebar();
  }

  private renderSidebar(): void {
    if (!this.sidebar || !this.data || !this.instance) return;
    clear(this.sidebar);
    this.inspector = renderInspector(this, this.sidebar, this.instance, this.data.class_names);
    this.detailEl = h("div", { class: "dv-detail-slot" });
    this.sidebar.appendChild(this.detailEl);
    this.overview?.highlight(this.instance.id, this.step);
    this.refreshDetail();
  }

  /** The grid's kind switch: one button per instance kind the run holds. */
  private kindSwitch(): HTMLElement {
    const grid = this.gridKinds();
    const bar = h("div", { class: "dv-kind-switch", role: "radiogroup", "aria-label": "Explanation kind",
      "data-testid": "kind-switch" }, h("span", { class: "muted" }, "Explanation"));
    for (const k of grid.length ? grid : [{ kind: this.kind } as KindInfo]) {
      const view = viewFor(k.kind);
      const on = k.kind === this.kind;
      append(bar, h("button", {
        class: "dv-kind" + (on ? " active" : ""), role: "radio", "aria-checked": String(on),
        "data-testid": `kind-${k.kind}`, title: view?.description ?? k.kind,
        disabled: grid.length < 2,
        onclick: () => { if (!on && this.run) void this.selectRun(this.run, k.kind); },
      }, view?.label ?? k.kind));
    }
    return bar;
  }

  /** The top-level view of a kind that is not an instances x steps grid (Dissection, Summit). */
  async showPage(kind: string): Promise<void> {
    const view = viewFor(kind);
    if (!view || view.layout !== "page" || !this.run) return;
    this.view = "page";
    this.pageKind = kind;
    this.overview = null;
    this.inspector = null;
    this.detailEl = null;
    this.renderToolbar();
    const run = this.run;
    try {
      if (!this.kinds.length) this.kinds = await this.loadKinds(run);
    } catch (err) {
      return this.fail(err, "kinds");
    }
    if (this.view !== "page" || this.pageKind !== kind || this.run !== run) return;
    clear(this.body);
    view.render(this, this.body, run, this.kinds.find((k) => k.kind === kind) ?? null);
    this.syncLink();
  }

  showCompare(): void {
    this.view = "compare";
    this.overview = null;
    this.inspector = null;
    this.detailEl = null;
    this.renderToolbar();
    clear(this.body);
    if (this.runs.length < 2) {
      this.compareState = {};
      this.syncLink();
      return this.empty(
        "Comparing needs two runs",
        "Only one run has DeepVID data so far. Log a second run to compare explanations side by side.",
      );
    }
    renderCompare(this, this.body); // reports its runs and instance through compareChanged
  }

  // ---- chrome -------------------------------------------------------------------------------
  runName(run: string): string {
    return this.runs.find((r) => r.run === run)?.name ?? run;
  }

  private renderToolbar(): void {
    clear(this.toolbar);
    append(this.toolbar, h("div", { class: "dv-brand" }, h("strong", {}, "DeepVID"),
      this.options.title ? h("span", { class: "dv-title" }, this.options.title) : null));

    if (this.experiments && this.experiments.length) {
      const sel = h("select", { "data-testid": "experiment-select", "aria-label": "Experiment" });
      for (const e of this.experiments) {
        append(sel, h("option", { value: e.id, selected: e.id === this.experiment }, e.name));
      }
      sel.addEventListener("change", () => {
        this.experiment = sel.value;
        this.run = null;
        void this.start();
      });
      append(this.toolbar, h("label", { class: "dv-field" }, h("span", {}, "Experiment"), sel));
    }

    if (this.runs.length) {
      const sel = h("select", { "data-testid": "run-select", "aria-label": "Run" });
      for (const r of this.runs) {
        const label = `${r.name} · ${r.instances} instances × ${r.steps} steps`;
        append(sel, h("option", { value: r.run, selected: r.run === this.run }, label));
      }
      sel.disabled = this.view === "compare";
      sel.addEventListener("change", () => {
        if (this.view === "page" && this.pageKind) {
          this.run = sel.value;
          this.kinds = [];
          void this.showPage(this.pageKind);
        } else void this.selectRun(sel.value);
      });
      append(this.toolbar, h("label", { class: "dv-field" }, h("span", {}, "Run"), sel));
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
      tab("overview", this.view === "overview", "Timeline",
        () => void this.selectRun(this.run ?? this.runs[0]?.run)),
      tab("compare", this.view === "compare", "Compare runs", () => this.showCompare()),
      // Kinds that explain layers or classes, not instances, get their own entries.
      ...pageViews().map((v) => tab(v.kind, this.view === "page" && this.pageKind === v.kind, v.label, () => {
        if (!this.run && this.runs.length) this.run = this.runs[0].run;
        void this.showPage(v.kind);
      }, v.description)));
    const reload = h("button", { class: "dv-button", "data-testid": "reload", title: "Fetch new steps",
      onclick: () => this.reload() }, "⟳ Reload");
    append(this.toolbar, this.runs.length ? tabs : null, h("span", { class: "dv-spacer" }), reload);
  }

  addWarnings(list: string[] | undefined): void {
    const fresh = (list ?? []).filter((w) => !this.warnings.has(w));
    if (!fresh.length) return;
    fresh.forEach((w) => this.warnings.add(w));
    clear(this.banners);
    const items = [...this.warnings];
    // A few warnings are shown at once; a long list stays folded behind its count.
    append(this.banners, h("details", { class: "dv-banner warn", "data-testid": "warnings", open: items.length <= 3 },
      h("summary", {}, `⚠ ${warningsSummary(items)}`),
      h("ul", {}, ...items.map((w) => h("li", {}, w)))));
  }

  loading(message: string): void {
    clear(this.body);
    append(this.body, h("div", { class: "dv-state loading", "data-testid": "loading" },
      h("div", { class: "spinner" }), message));
  }

  empty(title: string, message: string): void {
    clear(this.body);
    append(this.body, h("div", { class: "dv-state", "data-testid": "empty-state" },
      h("div", { class: "dv-state-icon" }, "∅"), h("h2", {}, title), h("p", {}, message)));
  }

  fail(err: unknown, what: string): void {
    clear(this.body);
    append(this.body, errorBox(err, what, () => this.reload()));
  }
}
