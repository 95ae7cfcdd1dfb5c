// The attribution kind's views (bring your own attribution: captum, pytorch-grad-cam, your own
// function): the overview cell shows the predicted class's map over the instance; the detail
// column shows the maps of the predicted, the true and any further explained class, the model's
// probabilities and the same deletion/insertion evidence as Grad-CAM's and DeepVID's.
import { decodeChannels, decodeMap, toMap2D } from "../codec";
import type { Map2D } from "../codec";
import { className, fmt, h, pct } from "../dom";
import { colorbar, imageCanvas, mapCanvas } from "../draw";
import { evidenceOf, NO_EVIDENCE, trustReason } from "../evidence";
import { evidenceSection } from "../evidence_panel";
import type { EncodedMap, EnvelopeRecordResp, Instance, StepSummary } from "../types";
import { registerView } from "./registry";

registerView({
  kind: "attribution",
  label: "Attribution",
  description: "Your own attribution method (captum, pytorch-grad-cam, ...): its maps, checked against a random map",
  layout: "instances",
  cellLegend: "attribution of the predicted class (red for, blue against)",
  cellArt: (inst: Instance, s: StepSummary, size: number) => mapCanvas(s.thumb, size, { image: inst.image }),
  tooltip(s: StepSummary): string[] {
    const ev = evidenceOf(s.fidelity);
    return [ev
      ? `deletion AUC ${fmt(ev.deletion, 3)} (random ${fmt(ev.randomDeletion, 3)}) · ` +
        `insertion AUC ${fmt(ev.insertion, 3)} (random ${fmt(ev.randomInsertion, 3)})`
      : NO_EVIDENCE];
  },
  detail: (rec: unknown, names: string[]) => {
    const r = rec as EnvelopeRecordResp;
    return sections(r, r.class_names?.length ? r.class_names : names);
  },
});

function isMap(v: unknown): v is EncodedMap {
  return typeof v === "object" && v !== null && "data" in v && "shape" in v;
}

function sections(rec: EnvelopeRecordResp, names: string[]): HTMLElement[] {
  const why = trustReason(rec.trustworthy, rec.fidelity);
  const probs = Array.isArray(rec.arrays.probs) ? rec.arrays.probs : [];
  const method = typeof rec.meta?.method === "string" ? rec.meta.method : "attribution";
  const sigmoid = rec.meta?.outputs === "sigmoid";
  const trueSet = Array.isArray(rec.meta?.labels) ? (rec.meta.labels as number[]) : null;
  const truth = trueSet
    ? `true ${trueSet.length ? trueSet.map((c) => className(names, c)).join(", ") : "none"}`
    : rec.label === null ? "true label unknown" : `true ${className(names, rec.label)}`;
  const summary = h("div", { class: "detail-summary" },
    h("span", { class: "pill" }, `predicted ${className(names, rec.predicted)}`),
    h("span", { class: "pill" }, truth),
    why === null
      ? h("span", { class: "pill good" }, rec.trustworthy === null
        ? "no faithfulness evidence" : "✓ better than a random map")
      : h("span", { class: "pill warn", "data-testid": "lowfi-warning" },
        "⚠ don't trust these maps: ", h("span", { "data-testid": "trust-reason" }, why)),
    h("span", { class: "muted", "data-testid": "attribution-method" }, `method ${method}`));

  const figs: HTMLElement[] = [];
  if (rec.image) {
    figs.push(h("figure", { class: "focus-fig" }, imageCanvas(rec.image, 128, "img focus-img"),
      h("figcaption", {}, "instance")));
  }
  const fig = (map: Map2D, cls: number | null, testid: string, what: string) =>
    h("div", { class: "focus-col" },
      h("figure", { class: "focus-fig", "data-testid": testid, "data-class": cls ?? -1 },
        mapCanvas(map, 128, { image: rec.image ?? undefined, crisp: true }),
        h("figcaption", {}, `${what}: ${className(names, cls)}`)),
      colorbar(map.scale, method));
  const pred = rec.arrays.map_pred;
  if (isMap(pred)) figs.push(fig(decodeMap(pred), rec.predicted, "map-pred", "predicted"));
  const tru = rec.arrays.map_true;
  if (isMap(tru)) figs.push(fig(decodeMap(tru), rec.label, "map-true", "true"));
  const classes = Array.isArray(rec.arrays.classes) ? rec.arrays.classes : [];
  const more = rec.arrays.maps;
  if (isMap(more) && classes.length) {
    const { h: mh, w: mw, channels } = decodeChannels(more);
    channels.forEach((values, i) =>
      figs.push(fig(toMap2D(values, mh, mw), classes[i], "map-target", "also explained")));
  }
  const maps = h("div", { class: "focus", "data-testid": "attribution-maps" },
    h("div", { class: "focus-row" }, ...figs),
    h("p", { class: "map-key muted" }, `${method}: the attribution of each class's score to the ` +
      "pixels, summed over colour channels. Red speaks for the class, blue against it."));

  const bars = h("div", { class: "prob-bars", "data-testid": "prob-bars" },
    ...names.map((name, c) => h("div", { class: "pb-row" + (c === rec.predicted ? " predicted" : "") },
      h("span", { class: "pb-name", title: name }, name),
      h("span", { class: "pb-track" },
        h("span", { class: "pb teacher", style: `width:${(probs[c] ?? 0) * 100}%` })),
      h("span", { class: "pb-val" }, pct(probs[c])))));

  const settings = h("table", { class: "settings", "data-testid": "settings" },
    h("tbody", {}, ...Object.entries(rec.settings ?? {}).map(([key, v]) =>
      h("tr", {}, h("th", {}, key), h("td", {}, typeof v === "string" ? v : JSON.stringify(v))))));

  return [
    summary,
    h("div", { class: "sec" }, h("h4", {}, "Where the model looks"), maps),
    evidenceSection(rec, why, `pixels, ranked by the predicted class's ${method} map`),
    h("div", { class: "sec" }, h("h4", {},
      sigmoid ? "The model's probabilities (each class on its own: sigmoid)" : "The model's probabilities"), bars),
    h("div", { class: "sec" }, h("h4", {}, "Settings"), settings),
  ];
}
