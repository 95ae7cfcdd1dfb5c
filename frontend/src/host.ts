// The one interface views (overview, inspector, detail, compare, pages) are given by the
// application shell. Views import this file, never app.ts, so the shell can import every view
// without an import loop, and a new view needs nothing but this.
import type { DataSource } from "./data";
import type { Instance, KindInfo, RunInfo, Timeline } from "./types";
import type { CompareLink, LinkKey } from "./url";

export interface ViewHost {
  /** Where every answer comes from (live backend or inline snapshot). */
  readonly source: DataSource;
  /** Runs with DeepVID data, in the order the backend lists them. */
  readonly runs: readonly RunInfo[];
  /** The run shown in the timeline (null before one is picked). */
  readonly run: string | null;
  /** The kind the instance grid shows, and every kind the run holds (`kinds?run=R`). */
  readonly kind: string;
  readonly kinds: readonly KindInfo[];
  /** Run pairs a saved compare page can show (null: any pair, from a live backend). */
  readonly pairs: readonly (readonly [string, string])[] | null;
  /** The selected instance and step (null when nothing is selected). */
  readonly instance: Instance | null;
  readonly step: number | null;
  /** The kind whose tab the detail panel shows (null: closed). */
  readonly detailKind: string | null;
  /** What to call a run on screen. */
  runName(run: string): string;
  /** Show the backend's warnings once, in the shell's banner. */
  addWarnings(list: string[] | undefined): void;
  /** The whole step summaries of one instance of the grid's run and kind (cached). */
  timeline(instance: string): Promise<Timeline>;
  selectInstance(id: string, step?: number | null): void;
  selectStep(step: number): void;
  /** Open the detail panel on (instance, step), on `kind`'s tab (default: the open one, or the
   * grid's kind). */
  openDetail(id: string, step: number, kind?: string): void;
  closeDetail(): void;
  /** The detail panel switched to another kind's tab (the page's link follows). */
  detailKindChanged(kind: string): void;
  /** Compare's first runs and instance from the page's link (once; null: none asked for). */
  takeCompareLink(): CompareLink | null;
  /** Compare shows other runs or another instance (the page's link follows). */
  compareChanged(state: CompareLink): void;
  /** Name a link parameter that matched nothing in the warnings banner. */
  warnLink(key: LinkKey, value: string, problem: string, fallback: string): void;
}
