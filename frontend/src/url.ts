// Deep links: the app's state as query parameters of a page address, read once when the app
// starts and written back (history.replaceState) as the user moves, so the address bar is always
// a link to what is on screen.
//
//   view=overview|compare|<page kind>  run=R  a=R  b=R  instance=ID  kind=K  experiment=E
//   class=own|a|b|label|<class index>   (compare's class picker; absent: each run's own)
//   step=S          the selected step (timeline and compare)
//   panel=K         the detail panel is open, on kind K's tab (timeline)
//   map=KEY         what the grid's cells show (a kind's cell map, e.g. thumb for weights)
//   metric=NAME     the run's metric above the grid
//
// The MLflow app's /deepvid/ page uses these names on its own address. TensorBoard's DeepVID tab
// is an iframe whose address TensorBoard owns; it reads and writes the same parameters on the
// outer page's address with a "deepvid_" prefix (deepvid_view=compare&deepvid_a=...#deepvid),
// which TensorBoard keeps (its own state lives in the hash). The self-contained viewer.html has
// no link: its address is a file the user moved around.

export const LINK_KEYS = ["view", "experiment", "run", "a", "b", "instance", "kind", "class", "step", "panel",
  "map", "metric"] as const;
export type LinkKey = (typeof LINK_KEYS)[number];
export type Link = Partial<Record<LinkKey, string>>;

/** Compare's runs (ids), instance and class picker, from a link or from what compare shows. */
export interface CompareLink {
  a?: string;
  b?: string;
  instance?: string;
  /** The compare API's `class` parameter (own, a, b, label or a class index). */
  class?: string;
  /** The step compare shows (absent: the last common one). */
  step?: string;
  /** The kind compare shows (absent: the first both runs hold). */
  kind?: string;
}

/** Where the link lives: a window (this one, or TensorBoard's outer page) and a name prefix. */
export interface LinkHost {
  window: Window;
  prefix?: string;
}

/** The link parameters of a query string (`?a=1&b=2`); empty values count as absent. */
export function readLink(search: string, prefix = ""): Link {
  const params = new URLSearchParams(search);
  const link: Link = {};
  for (const key of LINK_KEYS) {
    const value = params.get(prefix + key);
    if (value !== null && value !== "") link[key] = value;
  }
  return link;
}

/** `search` with every link parameter replaced by those of `link`; other parameters (the host's
 * own) are kept, in their order. Returns the query string with its "?" ("" when empty). */
export function writeLink(search: string, link: Link, prefix = ""): string {
  const params = new URLSearchParams(search);
  for (const key of LINK_KEYS) params.delete(prefix + key);
  for (const key of LINK_KEYS) {
    const value = link[key];
    if (value !== undefined && value !== "") params.set(prefix + key, value);
  }
  const out = params.toString();
  return out ? `?${out}` : "";
}

/** The link of `host`'s address, or null when it cannot be read (another origin's page). */
export function hostLink(host: LinkHost): Link | null {
  try {
    return readLink(host.window.location.search, host.prefix ?? "");
  } catch {
    return null; // a cross-origin parent: there is no link to follow, and none to keep
  }
}

/** Write `link` into `host`'s address without a new history entry, keeping the path, the hash
 * (TensorBoard's tab) and the history state that belong to the host page. */
export function replaceLink(host: LinkHost, link: Link): void {
  try {
    const loc = host.window.location;
    const search = writeLink(loc.search, link, host.prefix ?? "");
    if (search === loc.search) return;
    host.window.history.replaceState(host.window.history.state, "", loc.pathname + search + loc.hash);
  } catch {
    // A page that forbids it (another origin, a sandbox): the view works without a link.
  }
}

/** The banner line for a link parameter that did not match: which parameter, what it held, and
 * what is shown instead. */
export function linkWarning(param: string, value: string, problem: string, fallback: string): string {
  return `Link parameter ${param}=“${value}”: ${problem}; showing ${fallback} instead.`;
}
