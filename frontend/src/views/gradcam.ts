// The Grad-CAM kind's views (Selvaraju et al., ICCV 2017): the overview cell shows the predicted
// class's map over the instance; the detail column shows the maps of the predicted and the true
// class over the instance, the model's probabilities, and the same deletion/insertion evidence as
// DeepVID's, so the two explanations can be compared honestly.
import { decodeChannels, decodeMap, toMap2D } from "../codec";
import { className, fmt, h, pct } from "../dom";
import { colorbar, imageCanvas, mapCanvas } from "../draw";
import { evidenceOf, NO_EVIDENCE, trustReason } from "../evidence";
import { evidenceSection } from "../evidence_panel";
import { settingsTable } from "../settings";
import type { EncodedMap, EnvelopeRecordResp, Instance, StepSummary } from "../types";
import { registerView } from "./registry";

registerView({
  kind: "gradcam",
  label: "Grad-CAM",
  description: "Grad-CAM: where the gradient of a class's score weights a layer's activations",
  layout: "instances",
  cellLegend: "Grad-CAM of the predicted class",
  mapSign: "positive",
  headlineLabel: "deletion AUC",
  cellArt: (inst: Instance, s: StepSummary, size: number) =>
    mapCanvas(s.thumb, size, { image: inst.image, sign: "positive" }),
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
  const layer = typeof rec.meta?.layer === "string" ? rec.meta.layer : null;
  // multi-hot labels (a multi-label model): every true class, from meta
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
    layer ? h("span", { class: "muted", "data-testid": "gradcam-layer" }, `layer ${layer}`) : null);

  const figs: HTMLElement[] = [];
  if (rec.image) {
    figs.push(h("figure", { class: "focus-fig" }, imageCanvas(rec.image, 128, "img focus-img"),
      h("figcaption", {}, "instance")));
  }
  const camFig = (name: string, cls: number | null, testid: string, what: string) => {
    const m = rec.arrays[name];
    if (!isMap(m)) return null;
    const map = decodeMap(m);
    return h("div", { class: "focus-col" },
      h("figure", { class: "focus-fig", "data-testid": testid, "data-class": cls ?? -1 },
        mapCanvas(map, 128, { image: rec.image ?? undefined, sign: "positive" }),
        h("figcaption", {}, `${what}: ${className(names, cls)}`)),
      colorbar(map.scale, "Grad-CAM", "positive"));
  };
  const pred = camFig("cam_pred", rec.predicted, "cam-pred", "predicted");
  const truthFig = camFig("cam_true", rec.label, "cam-true", "true");
  if (pred) figs.push(pred);
  if (truthFig) figs.push(truthFig);
  // further explained classes (targets=, or a multi-label model's other predicted/true classes)
  const classes = Array.isArray(rec.arrays.classes) ? rec.arrays.classes : [];
  const more = rec.arrays.cams;
  if (isMap(more) && classes.length) {
    const { h: mh, w: mw, channels } = decodeChannels(more);
    channels.forEach((values, i) => {
      const map = toMap2D(values, mh, mw);
      figs.push(h("div", { class: "focus-col" },
        h("figure", { class: "focus-fig", "data-testid": "cam-target", "data-class": classes[i] },
          mapCanvas(map, 128, { image: rec.image ?? undefined, crisp: true }),
          h("figcaption", {}, `also explained: ${className(names, classes[i])}`)),
        colorbar(map.scale, "Grad-CAM")));
    });
  }
  const maps = h("div", { class: "focus", "data-testid": "gradcam-maps" },
    h("div", { class: "focus-row" }, ...figs),
    truthFig || trueSet ? null : h("p", { class: "muted" }, "No true-class map: the instance's label was not known."),
    h("p", { class: "map-key muted" }, "Grad-CAM: the layer's activations weighted by the gradient of the " +
      "class's score, kept where positive and upsampled to the input: never negative, so white is 0 and dark red " +
      "the strongest evidence for the class."));

  const bars = h("div", { class: "prob-bars", "data-testid": "prob-bars" },
    ...names.map((name, c) => h("div", { class: "pb-row" + (c === rec.predicted ? " predicted" : "") },
      h("span", { class: "pb-name", title: name }, name),
      h("span", { class: "pb-track" },
        h("span", { class: "pb teacher", style: `width:${(probs[c] ?? 0) * 100}%` })),
      h("span", { class: "pb-val" }, pct(probs[c])))));

  // a layer left to Grad-CAM's default is shown as what it resolved to
  const settings = settingsTable(rec.settings, { layer });

  return [
    summary,
    h("div", { class: "sec" }, h("h4", {}, "Where the model looks"), maps),
    evidenceSection(rec, why, "pixels, ranked by the predicted class's map"),
    h("div", { class: "sec" }, h("h4", {}, "The model's probabilities"), bars),
    h("div", { class: "sec" }, h("h4", {}, "Settings"), settings),
  ];
}
