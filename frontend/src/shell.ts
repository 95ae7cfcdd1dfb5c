// What the shell's parts (toolbar.ts, applink.ts) see of the application: its state and its
// navigation, as an interface that app.ts implements, so the parts never import app.ts (no
// import loop, not even a type-only one).
import type { ViewHost } from "./host";
import type { KindInfo, RunInfo } from "./types";
import type { CompareLink, Link } from "./url";

/** "page": the top-level view of a kind that is not an instances x steps grid (pageKind). */
export type View = "overview" | "compare" | "page";

export interface AppOptions {
  title?: string;
  view?: View;
  run?: string;
  /** A link to open (url.ts): view, run, compare's runs and instance, grid kind, step, panel,
   * experiment. Runs and experiments match by id or name; a value that matches nothing is named
   * in the warnings banner and the default is shown. */
  link?: Link;
  /** How the link's parameters are spelled in the address ("deepvid_" in TensorBoard), so a
   * warning names the parameter the user typed. */
  linkPrefix?: string;
  /** Called with the link of what is on screen whenever it changes (keeps the address bar a
   * shareable link). */
  onLink?: (link: Link) => void;
}

/** What a link asks for that is checked once its data has arrived (applink.ts). */
export interface Wanted {
  kind: string | null;
  instance: string | null;
  step: string | null;
  panel: string | null;
  metric: string | null;
  compare: CompareLink | null;
}

export interface Shell extends ViewHost {
  readonly options: AppOptions;
  runs: RunInfo[];
  experiment: string | null;
  experiments: { id: string; name: string }[] | null;
  run: string | null;
  view: View;
  kind: string;
  pageKind: string | null;
  gridMap: string | null;
  metric: string | null;
  compareState: CompareLink;
  want: Wanted;
  findRun(value: string | null | undefined): string | null;
  /** Hand the link of what is on screen to the host page. */
  syncLink(): void;
  gridKinds(): KindInfo[];
  selectRun(run: string, kind?: string): Promise<void>;
  showCompare(): void;
  showPage(kind: string): Promise<void>;
  pickExperiment(id: string): void;
  pickRun(run: string): void;
  reload(): void;
}
