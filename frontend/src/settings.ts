// The settings table every detail view ends with: numbers rounded as people read them
// (l2 0.01, not 0.009999999776482582), and a setting left at its default named as such, with the
// value it resolved to where the record says (Grad-CAM's layer: "default (features.6)").
import { fmtNumber, h } from "./dom";

function show(v: unknown): string {
  if (typeof v === "number") return fmtNumber(v);
  if (typeof v === "string") return v;
  return JSON.stringify(v, (_k, x) => (typeof x === "number" ? Number(fmtNumber(x)) : x));
}

/** `settings` as a key/value table; `resolved` names what a `null` (default) setting became. */
export function settingsTable(settings: Record<string, unknown> | undefined,
  resolved: Record<string, unknown> = {}): HTMLElement {
  return h("table", { class: "settings", "data-testid": "settings" },
    h("tbody", {}, ...Object.entries(settings ?? {}).map(([key, v]) => {
      const value = v === null || v === undefined
        ? (resolved[key] !== undefined && resolved[key] !== null ? `default (${show(resolved[key])})` : "default")
        : show(v);
      return h("tr", {}, h("th", {}, key), h("td", {}, value));
    })));
}
