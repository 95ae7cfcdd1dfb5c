// Application shell: the state (runs, the grid's run, kind and selection, the open panel), the
// loading of what a view needs, and the layout of the timeline page. The toolbar
// (toolbar.ts), the link (applink.ts) and every view live in their own modules and read
// everything through `app.source`.
import { applyLink, currentLink } from "./applink";
import { renderCompare } from "./compare";
import { kindParams, type DataSource } from "./data";
import { append, clear, h } from "./dom";
import type { AppOptions, Shell, View, Wanted } from "./shell";
import { detailKinds } from "./detail";
import { emptyState, errorBox, loadingState } from "./states";
import { TimelinePage } from "./timeline_page";
import { renderToolbar } from "./toolbar";
import type { AlertsResp, Instance, InstancesResp, KindInfo, KindsResp, MetricsResp, RunInfo, RunsResp, Timeline } from "./types";
import { linkWarning, type CompareLink, type Link, type LinkKey } from "./url";
import { instanceView, pageViews, viewFor } from "./views";
import { warningsSummary } from "./warnings";

export type { AppOptions, View } from "./shell";

export class App implements Shell {
  readonly root: HTMLElement;
  private readonly toolbar: HTMLElement;
  private readonly banners: HTMLElement;
  private readonly body: HTMLElement;
  runs: RunInfo[] = [];
  experiment: string | null = null;
  experiments: { id: string; name: string }[] | null = null;
  /** Run pairs a saved compare page can show (null: any pair, from a live backend). */
  pairs: [string, string][] | null = null;
  run: string | null = null;
  data: InstancesResp | null = null;
  instance: Instance | null = null;
  step: number | null = null;
  /** The detail panel's tab (null: the panel is closed). */
  detailKind: string | null = null;
  view: View;
  /** The grid's kind ("" until a run is shown: then the run's first), the kinds the run holds,
   * and the kind a "page" view shows. */
  kind = "";
  kinds: KindInfo[] = [];
  pageKind: string | null = null;
  /** What the grid's cells show when the user picked it (a cell map key), and the metric. */
  gridMap: string | null = null;
  metric: string | null = null;
  /** What compare shows (for the address). */
  compareState: CompareLink = {};
  want: Wanted = { kind: null, instance: null, step: null, panel: null, metric: null, compare: null };
  /** The timeline page while it is shown. */
  private page: TimelinePage | null = null;
  private warnings = new Set<string>();
  /** The link not yet applied: applied once, when the first runs listing arrives. */
  private pending: Link | null;

  constructor(host: HTMLElement, readonly source: DataSource, readonly options: AppOptions = {}) {
    this.view = options.view ?? "overview";
    this.pending = options.link && Object.keys(options.link).length ? options.link : null;
    this.toolbar = h("header", { class: "dv-toolbar" });
    this.banners = h("div", { class: "dv-banners" });
    this.body = h("main", { class: "dv-body" });
    this.root = h("div", { class: "dv-root", "data-testid": "deepvid-app" }, this.toolbar, this.banners, this.body);
    clear(host);
    host.appendChild(this.root);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.detailKind !== null) this.closeDetail();
    });
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
      return this.empty("No DeepVID data yet", "Nothing has been logged yet. Add DeepVIDCallback to your " +
        "training loop (logdir=... for TensorBoard, mlflow=True for MLflow) and press Reload once the first " +
        "explained step is written.");
    }
    if (link) applyLink(this, link);
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

  /** Compare's first runs, instance, class and step from a link (once), else null. */
  takeCompareLink(): CompareLink | null {
    const want = this.want.compare;
    this.want.compare = null;
    return want;
  }

  /** Compare moved to other runs, another instance or step: the address follows. */
  compareChanged(state: CompareLink): void {
    this.compareState = { ...state };
    this.syncLink();
  }

  /** Hand the link of what is on screen to the host page (which writes its address). */
  syncLink(): void {
    if (this.options.onLink && !this.pending) this.options.onLink(currentLink(this));
  }

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

  /** The whole step summaries of one instance of the grid's run and kind (cached by source). */
  timeline(instance: string): Promise<Timeline> {
    return this.source.get<Timeline>("timeline", { run: this.run ?? "", instance, ...kindParams(this.kind) });
  }

  async selectRun(run: string, kind?: string): Promise<void> {
    const linkKind = this.want.kind;
    this.want.kind = null;
    const runChanged = run !== this.run || !this.kinds.length;
    this.run = run;
    this.view = "overview";
    this.leaveTimeline();
    this.renderToolbar();
    this.loading(`Loading ${this.runName(run)}…`);
    let data: InstancesResp;
    // before a kind is chosen, the run's first grid kind as the runs listing names it, so its
    // overview can be asked for at once
    const first = this.runs.find((r) => r.run === run)?.kinds?.find((k) => instanceView(k)) ?? "";
    const want = kind ?? (this.kind || first);
    // Ask for the overview of the wanted kind while the kinds are listed (no extra round trip
    // before the grid), but only when the run is known to hold it: a request for a kind the run
    // lacks is answered 404, which the browser logs in TensorBoard's console.
    const early = this.holds(run, want, runChanged)
      ? this.source.get<InstancesResp>("instances", { run, ...kindParams(want) }) : null;
    early?.catch(() => undefined); // a failure is reported by the await below
    const metrics = this.source.get<MetricsResp>("metrics", { run });
    metrics.catch(() => undefined); // older backends have no metrics: the strip says so
    const alerts = this.source.get<AlertsResp>("alerts", { run });
    alerts.catch(() => undefined); // older backends and runs without the alert kind: no banner
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
      return this.empty(`This run has no ${label} data`, `Run “${this.runName(run)}” has no readable ${label} ` +
        "explanations. Check that the callback is attached to this run, or see the warnings above.");
    }
    this.pickSelection(data);
    this.leaveTimeline();
    this.page = new TimelinePage(this, this.body, data, metrics, alerts, () => this.toolbar.getBoundingClientRect().bottom);
    this.openLinkedPanel();
    this.syncStep(); // marks the selection (and writes the link)
  }

  /** The selected instance and step after a run's data arrived: the link's, else the current
   * ones where the run has them, else the first instance at its last step. */
  private pickSelection(data: InstancesResp): void {
    const { instance: linked, step: linkedStep } = this.want;
    this.want.instance = null;
    this.want.step = null;
    const keep = data.instances.find((i) => i.id === (linked ?? this.instance?.id)) ?? data.instances[0];
    if (linked !== null && keep.id !== linked) {
      this.warnLink("instance", linked, `run “${this.runName(this.run ?? "")}” has no such instance`, `“${keep.id}”`);
    }
    this.instance = keep;
    const steps = keep.steps.map((s) => s.step);
    const last = steps[steps.length - 1];
    if (linkedStep !== null) {
      const asked = /^-?\d+$/.test(linkedStep) ? Number(linkedStep) : NaN;
      if (steps.includes(asked)) this.step = asked;
      else {
        this.warnLink("step", linkedStep, Number.isNaN(asked) ? "expected a step number"
          : `instance “${keep.id}” has no step ${linkedStep} (its steps run ${steps[0]}–${last})`, `step ${last}`);
        this.step = last;
      }
      return;
    }
    this.step = this.step !== null && steps.includes(this.step) ? this.step : last;
  }

  /** A link's `panel`: the detail panel, open on that kind's tab. */
  private openLinkedPanel(): void {
    const panel = this.want.panel;
    this.want.panel = null;
    if (panel === null || !this.instance || this.step === null) return;
    const kinds = detailKinds(this).map((v) => v.kind);
    if (!kinds.includes(panel)) {
      this.warnLink("panel", panel, `expected one of ${kinds.join(", ")}`, `the ${viewFor(this.kind)?.label ?? this.kind} tab`);
    }
    this.openDetail(this.instance.id, this.step, kinds.includes(panel) ? panel : this.kind);
  }

  reload(): void {
    this.source.clear();
    this.warnings.clear();
    clear(this.banners);
    void this.start();
  }

  pickExperiment(id: string): void {
    this.experiment = id;
    this.run = null;
    void this.start();
  }

  pickRun(run: string): void {
    if (this.view === "page" && this.pageKind) {
      this.run = run;
      this.kinds = [];
      void this.showPage(this.pageKind);
    } else void this.selectRun(run);
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
    if (changed) this.page?.renderSidebar();
    this.syncStep();
  }

  selectStep(step: number): void {
    if (!this.instance || step === this.step) return;
    if (!this.instance.steps.some((s) => s.step === step)) return;
    this.step = step;
    this.syncStep();
  }

  openDetail(id: string, step: number, kind?: string): void {
    this.detailKind = kind ?? this.detailKind ?? this.kind;
    this.selectInstance(id, step); // draws the panel and reveals the cell
  }

  closeDetail(): void {
    if (this.detailKind === null) return;
    this.detailKind = null;
    this.page?.closeDetail();
    this.syncLink();
  }

  detailKindChanged(kind: string): void {
    this.detailKind = kind;
    this.syncLink();
  }

  private syncStep(): void {
    this.page?.showSelection();
    this.syncLink();
  }

  // ---- pages --------------------------------------------------------------------------------
  /** The top-level view of a kind that is not an instances x steps grid (Dissection, Summit). */
  async showPage(kind: string): Promise<void> {
    const view = viewFor(kind);
    if (!view || view.layout !== "page" || !this.run) return;
    this.view = "page";
    this.pageKind = kind;
    this.leaveTimeline();
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
    this.leaveTimeline();
    this.renderToolbar();
    clear(this.body);
    if (this.runs.length < 2) {
      this.compareState = {};
      this.syncLink();
      const one = this.runs[0] ? `“${this.runs[0].name}”` : "one run";
      return this.empty("Comparing needs two runs", this.source.saved
        ? `This saved page holds one run, ${one}. Compare runs in the live app (mlflow server --app-name ` +
          "deepvid), in TensorBoard's DeepVID tab, or save a comparison with `deepvid compare`."
        : `Only ${one} has DeepVID data so far. Log a second run to compare explanations side by side.`);
    }
    renderCompare(this, this.body); // reports its runs and instance through compareChanged
  }

  private leaveTimeline(): void {
    this.detailKind = null;
    this.page?.dispose();
    this.page = null;
  }

  // ---- chrome -------------------------------------------------------------------------------
  runName(run: string): string {
    return this.runs.find((r) => r.run === run)?.name ?? run;
  }

  private renderToolbar(): void {
    renderToolbar(this, this.toolbar);
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
    this.body.replaceChildren(loadingState(message));
  }

  empty(title: string, message: string): void {
    this.body.replaceChildren(emptyState(title, message));
  }

  fail(err: unknown, what: string): void {
    this.body.replaceChildren(errorBox(err, what, () => this.reload()));
  }
}
