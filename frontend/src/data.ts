// The data layer: one interface, two adapters. The views only ever call `source.get(route, params)`
// and cannot tell whether the answer came over HTTP (TensorBoard plugin, MLflow app) or from the
// inline snapshot of a self-contained viewer.html.

export type Params = Record<string, string>;

/** The `kind` parameter as requests carry it. Empty (not chosen yet): none, and the API answers
 * with the run's first kind (its response names it). */
export function kindParams(kind: string): Params {
  return kind ? { kind } : {};
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly route: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface DataSource {
  /** True for a saved page (viewer.html): it holds the runs it was saved with, nothing more. */
  readonly saved: boolean;
  get<T>(route: string, params?: Params): Promise<T>;
  /** Forget cached answers (the Reload button), so new steps written meanwhile show up. */
  clear(): void;
}

/**
 * `route + "?" + form-encoded(sorted(params))`: the snapshot key format of http_api.md, encoded
 * exactly as `URLSearchParams` does (and `deepvid_plugin.api.snapshot_key` mirrors).
 */
export function snapshotKey(route: string, params: Params = {}): string {
  const keys = Object.keys(params).sort();
  if (keys.length === 0) return route;
  return route + "?" + new URLSearchParams(keys.map((k) => [k, params[k]])).toString();
}

function memo(fetcher: <T>(route: string, params: Params) => Promise<T>, saved: boolean): DataSource {
  const cache = new Map<string, Promise<unknown>>();
  return {
    saved,
    get<T>(route: string, params: Params = {}): Promise<T> {
      const key = snapshotKey(route, params);
      let hit = cache.get(key) as Promise<T> | undefined;
      if (!hit) {
        hit = fetcher<T>(route, params);
        cache.set(key, hit);
        // Errors are not cached: a retry after the backend recovers must ask again.
        hit.catch(() => cache.delete(key));
      }
      return hit;
    },
    clear() {
      cache.clear();
    },
  };
}

/** Ask a live backend: `apiBase + route?params` (TensorBoard plugin or MLflow app). */
export function httpSource(apiBase: string | URL): DataSource {
  const base = new URL(String(apiBase), document.baseURI);
  return memo(async <T>(route: string, params: Params): Promise<T> => {
    const url = new URL(route, base);
    for (const k of Object.keys(params).sort()) url.searchParams.set(k, params[k]);
    let response: Response;
    try {
      response = await fetch(url.href, { headers: { Accept: "application/json" } });
    } catch (err) {
      throw new ApiError(0, `could not reach the DeepVID backend (${String(err)})`, route);
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(
        response.status,
        `the DeepVID backend answered HTTP ${response.status} without JSON`,
        route,
      );
    }
    if (!response.ok) {
      const msg = (body as { error?: unknown })?.error;
      throw new ApiError(response.status, typeof msg === "string" ? msg : `HTTP ${response.status}`, route);
    }
    return body as T;
  }, false);
}

/** Answer from an inline snapshot: `{ snapshotKey: response }` (deepvid_plugin.api.snapshot). */
export function snapshotSource(snapshot: Record<string, unknown>): DataSource {
  if (snapshot === null || typeof snapshot !== "object") {
    throw new TypeError(`snapshot: expected an object of responses, got ${typeof snapshot}`);
  }
  return memo(async <T>(route: string, params: Params): Promise<T> => {
    const key = snapshotKey(route, params);
    if (!Object.prototype.hasOwnProperty.call(snapshot, key)) {
      throw new ApiError(404, `this saved viewer does not include ${key}`, route);
    }
    const body = snapshot[key] as { error?: unknown; status?: unknown };
    if (body && typeof body.error === "string") {
      throw new ApiError(typeof body.status === "number" ? body.status : 404, body.error, route);
    }
    return body as T;
  }, true);
}
