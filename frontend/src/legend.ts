// The key to the overview's marks; "low trust" is spelled out because it is the one mark that
// changes what the user should conclude.
import { divergingCss } from "./colors";
import { h } from "./dom";

/** `cells`: what the grid's cells show (the kind's InstanceView.cellLegend). */
export function legend(cells = "weight of the predicted class"): HTMLElement {
  const stops = [-1, -0.5, 0, 0.5, 1].map((v) => `${divergingCss(v)} ${(v + 1) * 50}%`).join(", ");
  return h("div", { class: "dv-legend", "data-testid": "legend" },
    h("span", { class: "lg-item" },
      h("span", { class: "lg-bar", style: `background: linear-gradient(to right, ${stops})` }),
      `${cells}: `, h("b", { class: "neg" }, "against"), " · 0 · ",
      h("b", { class: "pos" }, "for"), " (each map scaled to its own max)"),
    h("span", { class: "lg-item" }, h("span", { class: "mark-changed" }, "◆"), "prediction changed"),
    h("span", { class: "lg-item" }, h("span", { class: "lg-lowfi" }, "⚠"),
      h("span", {}, h("b", {}, "low trust:"), " the student disagrees with the model, or the map is no better " +
        "than a random one; don't trust this explanation (hover a cell for why)")),
    h("span", { class: "lg-item" }, h("span", { class: "lab ok" }, "✓"), "/", h("span", { class: "lab bad" }, "✗"),
      "prediction matches / misses the true label"),
  );
}
