// The key to the overview's marks, one per kind: its map's colour scale in words that fit the
// map's sign (no "against" for maps that are never negative), the shared marks (prediction
// changed, low trust, right/wrong) with what low trust means for this kind, and the kind's own
// marks. "Low trust" is spelled out because it is the one mark that changes what the user
// should conclude.
import { scaleGradient } from "./colors";
import { h } from "./dom";
import type { InstanceView } from "./views";

/** The default meaning of the low-trust mark (kinds whose trust is their map's evidence). */
export const LOW_TRUST_EVIDENCE = "the map is no better than a random one at deletion/insertion";

/** The legend of `view`'s grid; `cells` is what the cells show (the picked map's words). */
export function legend(view: InstanceView | undefined, cells?: string): HTMLElement {
  const what = cells ?? view?.cellLegend ?? "map of the predicted class";
  const positive = view?.mapSign === "positive";
  const scale = positive
    ? [h("b", { class: "pos" }, "0"), " → ", h("b", { class: "pos" }, "strongest"),
      " (never negative; each map scaled to its own peak)"]
    : [h("b", { class: "neg" }, "against"), " · 0 · ", h("b", { class: "pos" }, "for"),
      " (each map scaled to its own max)"];
  return h("div", { class: "dv-legend", "data-testid": "legend", "data-kind": view?.kind ?? "" },
    h("span", { class: "lg-item", "data-testid": "legend-scale", "data-sign": positive ? "positive" : "signed" },
      h("span", { class: "lg-bar", style: `background: ${scaleGradient(positive ? "positive" : "signed")}` }),
      `${what}: `, ...scale),
    h("span", { class: "lg-item" }, h("span", { class: "mark-changed" }, "◆"),
      h("span", { class: "lg-changed-edge" }), "prediction changed (also the cell's orange left edge)"),
    h("span", { class: "lg-item", "data-testid": "legend-low-trust" }, h("span", { class: "lg-lowfi" }, "⚠"),
      h("span", {}, h("b", {}, "low trust"), " (hatched): ", view?.lowTrust ?? LOW_TRUST_EVIDENCE,
        "; don't trust this explanation (hover a cell for why)")),
    h("span", { class: "lg-item" }, h("span", { class: "lab ok" }, "✓"), "/", h("span", { class: "lab bad" }, "✗"),
      "prediction matches / misses the true label"),
    ...(view?.legendItems?.() ?? []),
  );
}
