// Views registered by explanation kind (deepvid_plugin/kinds on the Python side). A kind adds
// one module in this folder that calls registerView() and one import line in views/index.ts;
// the shell, the grid and the detail panel ask this registry, never a kind's name.
//
// Two layouts:
// - "instances": the kind explains tracked instances step by step, so it shares the instances x
//   steps grid (each cell drawn by `cell`) and the detail panel (its column drawn by `detail`);
// - "page": the kind explains layers, classes or the model (Network Dissection, Summit), so it
//   gets its own top-level view entry, drawn by `render`.
import type { MapSign } from "../colors";
import type { ViewHost } from "../host";
import type { Instance, KindInfo, StepSummary } from "../types";

interface BaseView {
  /** The kind's name, as the API spells it (`kind=`). */
  readonly kind: string;
  /** What to call it on screen. */
  readonly label: string;
  /** One sentence: what the kind shows (the kind switch's tooltip). */
  readonly description: string;
}

/** A map a grid cell can show: the step summary key of an encoded map, and its words. */
export interface CellMap {
  readonly key: string;
  /** The picker's label ("contribution (weight × input)"). */
  readonly label: string;
  /** What the cells show, for the legend. */
  readonly legend: string;
}

export interface InstanceView extends BaseView {
  readonly layout: "instances";
  /** What the grid's cells show, for the legend (e.g. "weight of the predicted class"). */
  readonly cellLegend: string;
  /** The sign of the kind's maps, which picks their colour scale everywhere (grid, compare,
   * legend): "positive" for maps that are never negative (Grad-CAM). Default "signed". */
  readonly mapSign?: MapSign;
  /** What the low-trust mark means for this kind, for the legend (default: the map is no
   * better than a random one at deletion/insertion). */
  readonly lowTrust?: string;
  /** The maps a cell can show when the summaries carry more than `thumb` (the first one present
   * is the default); the grid swaps it in as `thumb` before calling `cellArt`. */
  readonly cellMaps?: readonly CellMap[];
  /** The headline number's short name ("fidelity", "deletion AUC"), for charts and read-outs
   * (default: the kind's headline from the API). */
  readonly headlineLabel?: string;
  /** Legend items of marks the kind's own cells draw (beyond the shared ones). */
  readonly legendItems?: () => HTMLElement[];
  /** The overview cell's picture of one step (painted lazily, when it scrolls into view). */
  cellArt(inst: Instance, s: StepSummary, size: number): HTMLElement;
  /** Lines of the cell's tooltip that are the kind's own (after instance, step, prediction). */
  tooltip(s: StepSummary): string[];
  /** The detail column of one record (the `record` route's JSON of this kind). */
  detail(rec: unknown, names: string[]): HTMLElement[];
}

export interface PageView extends BaseView {
  readonly layout: "page";
  /** Draw the view of `run` (the API's run id; `host.runName(run)` is what to show) into
   * `parent`; `info` is null when the run holds no data of this kind. Data comes from
   * `host.source.get(route, { run, kind })`. */
  render(host: ViewHost, parent: HTMLElement, run: string, info: KindInfo | null): void;
}

export type KindView = InstanceView | PageView;

const registry = new Map<string, KindView>();

export function registerView(view: KindView): KindView {
  if (registry.has(view.kind)) throw new Error(`view: kind ${JSON.stringify(view.kind)} is already registered`);
  registry.set(view.kind, view);
  return view;
}

export function viewFor(kind: string): KindView | undefined {
  return registry.get(kind);
}

export function instanceView(kind: string): InstanceView | undefined {
  const v = registry.get(kind);
  return v?.layout === "instances" ? v : undefined;
}

/** Every registered view, in registration order (views/index.ts). */
export function allViews(): KindView[] {
  return [...registry.values()];
}

export function pageViews(): PageView[] {
  return allViews().filter((v): v is PageView => v.layout === "page");
}
