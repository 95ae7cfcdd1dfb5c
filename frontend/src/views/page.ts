// What the views of kinds that are not instance x step grids share until their kinds log data:
// an honest empty state naming the kind and what would fill it.
import { h } from "../dom";
import type { KindInfo } from "../types";

export function pageShell(kind: string, label: string, what: string, run: string,
  info: KindInfo | null): HTMLElement {
  const body = info === null
    ? [h("div", { class: "dv-state-icon" }, "∅"), h("h2", {}, `No ${kind} data in this run`),
      h("p", {}, `Run “${run}” holds no ${label} results. ${what}`)]
    : [h("h2", {}, label), h("p", {},
      `This run holds ${info.subjects} ${info.subject}s × ${info.steps} steps of ${kind} data, but this ` +
      "version of the viewer cannot draw them yet.")];
  return h("div", { class: "dv-state", "data-testid": "page-view", "data-kind": kind,
    "data-has-data": String(info !== null) }, ...body);
}
