// The run's explanation-drift alerts (GET alerts, methods/alert): a banner above the grid that
// says what changed and from which step, each alert a button that selects its step (and the
// first instance it names), and a mark on the grid's step axis wherever something fired. The
// alert is the way in: "the model started looking somewhere new at step 2" before any map.
import { append, h } from "./dom";
import type { Alert, AlertsResp } from "./types";

const NAMES: Record<string, string> = {
  hot_spot: "hot spot", map_drift: "map drift", concept_shift: "concept shift", graph_shift: "graph shift",
};

const name = (a: Alert) => NAMES[a.detector] ?? a.detector;

/** The instance an alert points at first (its evidence's instances), if any. */
export function alertInstance(a: Alert): string | null {
  const list = a.evidence?.instances;
  return Array.isArray(list) && typeof list[0] === "string" ? list[0] : null;
}

/** The banner, or null when the run has no alerts (nothing is drawn then). */
export function alertsBanner(resp: AlertsResp, onPick: (a: Alert) => void): HTMLElement | null {
  const alerts = resp.alerts;
  if (!alerts.length) return null;
  const steps = [...new Set(alerts.map((a) => a.step))].sort((x, y) => x - y);
  const first = alerts[0];
  const items = alerts.map((a) => h("li", {},
    h("button", { class: "alert-item", "data-testid": "alert-item", "data-step": a.step,
      title: "Select this step in the grid", onclick: () => onPick(a) },
    h("b", {}, `step ${a.step}`), ` · ${name(a)} (${a.kind}${a.subject !== "run" ? `, ${a.subject}` : ""}): `, a.message)));
  const plural = alerts.length === 1 ? "" : "s";
  return h("details", { class: "alert-banner", "data-testid": "alert-banner", open: alerts.length <= 4 },
    h("summary", {},
      h("b", {}, "⚠ The explanations changed: "),
      `${alerts.length} drift alert${plural} from step ${first.step}`,
      steps.length > 1 ? ` (steps ${steps.join(", ")})` : "",
      h("span", { class: "muted" }, " · the model may have started looking somewhere new; click one to see it")),
    h("ul", { class: "alert-list" }, ...items));
}

/** Mark the grid's step headers where alerts fired (a ⚠ with the alerts as its tooltip). */
export function markAlertSteps(scroller: HTMLElement, resp: AlertsResp): void {
  const by = new Map<number, string[]>();
  for (const a of resp.alerts) by.set(a.step, [...(by.get(a.step) ?? []), `${name(a)}: ${a.message}`]);
  for (const el of scroller.querySelectorAll<HTMLElement>(".step-head[data-step]")) {
    const msgs = by.get(Number(el.dataset.step));
    if (!msgs || el.classList.contains("alerted")) continue;
    el.classList.add("alerted");
    el.title = msgs.join("\n");
    el.setAttribute("data-testid", "alert-step");
    append(el, h("span", { class: "alert-mark", "aria-label": `${msgs.length} drift alert(s)` }, " ⚠"));
  }
}
