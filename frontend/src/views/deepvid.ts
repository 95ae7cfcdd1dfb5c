// The DeepVID kind's views: the overview cell (the predicted class's weight map over the instance)
// and the detail column: where the model looks (one class's weight and contribution maps over the
// instance, per channel for colour images; for a student over regions, each region's weight drawn
// back onto its pixels with the regions outlined), the faithfulness evidence (deletion/insertion
// against a random map), the maps of every stored class, teacher vs student probabilities, the
// neighbour grid coloured by the teacher's label, and the settings used.
import { decodeChannels, toMap2D, type Map2D } from "../codec";
import { classColor } from "../colors";
import { clear, className, fmt, h, pct } from "../dom";
import { colorbar, imageCanvas, mapCanvas } from "../draw";
import { evidenceOf, NO_EVIDENCE, trustReason } from "../evidence";
import { evidenceSection } from "../evidence_panel";
import { settingsTable } from "../settings";
import type { EncodedImg, EncodedMap, Instance, RecordResp, StepSummary } from "../types";
import { registerView } from "./registry";

registerView({
  kind: "deepvid",
  label: "DeepVID",
  description: "local linear students (DeepVID): what each pixel or region adds to a class, with their fidelity",
  layout: "instances",
  cellLegend: "weight of the predicted class",
  headlineLabel: "fidelity",
  lowTrust: "the student disagrees with the model, or the map is no better than a random one",
  // Contributions first: "where the model looks" on each instance, as the detail panel says;
  // summaries of older versions have the weights only.
  cellMaps: [
    { key: "thumb_contribution", label: "contribution (weight × input)",
      legend: "contribution (weight × input) of the predicted class" },
    { key: "thumb", label: "weight", legend: "weight of the predicted class" },
  ],
  cellArt: (inst: Instance, s: StepSummary, size: number) => mapCanvas(s.thumb, size, { image: inst.image }),
  tooltip(s: StepSummary): string[] {
    const ev = evidenceOf(s.fidelity);
    return [
      `fidelity (top-1 agreement): ${fmt(s.fidelity?.top1_agreement, 2)}`,
      ev
        ? `deletion AUC ${fmt(ev.deletion, 3)} (random ${fmt(ev.randomDeletion, 3)}) · ` +
          `insertion AUC ${fmt(ev.insertion, 3)} (random ${fmt(ev.randomInsertion, 3)})`
        : NO_EVIDENCE,
    ];
  },
  detail: (rec: unknown, names: string[]) => {
    const r = rec as DeepVIDRecord;
    return sections(r, r.class_names?.length ? r.class_names : names);
  },
});

/** The record route's DeepVID answer (deepvid_plugin/methods/deepvid/kind.py): `weights[i]` is the
 * map of class `classes[i]` (every class when absent: older backends); with `segments` the
 * student read regions and `weights[i]` holds one value per region. */
type DeepVIDRecord = Omit<RecordResp, "input"> & {
  input?: EncodedMap | null;
  classes?: number[];
  segments?: { shape: number[]; data: string } | null;
};

function sections(rec: DeepVIDRecord, names: string[]): HTMLElement[] {
  const k = names.length;
  const f = rec.fidelity ?? {};
  const why = trustReason(rec.trustworthy, f);
  const summary = h("div", { class: "detail-summary" },
    h("span", { class: "pill" }, `predicted ${className(names, rec.predicted)}`),
    h("span", { class: "pill" }, rec.label === null ? "true label unknown" : `true ${className(names, rec.label)}`),
    why === null
      ? h("span", { class: "pill good" }, "✓ trustworthy explanation")
      : h("span", { class: "pill warn", "data-testid": "lowfi-warning" },
        "⚠ don't trust these maps: ", h("span", { "data-testid": "trust-reason" }, why)),
    h("span", { class: "muted" },
      `top-1 agreement ${fmt(f.top1_agreement)} · KL ${fmt(f.kl, 3)} · R² ${fmt(f.r2_top)}` +
      (f.mae_top !== undefined ? ` · |Δp| ${fmt(f.mae_top, 3)}` : "")));

  const maps = classMaps(rec);
  const focusSlot = h("div", { class: "focus-slot" });
  // colour images: R, G and B of the focused class, in a section of their own (tall)
  const channelSlot = h("div", { class: "channel-slot" });
  const showFocus = (c: number) => {
    clear(focusSlot);
    focusSlot.append(focus(rec, names, maps, c));
    clear(channelSlot);
    if (maps.c === 3) channelSlot.append(channelTable(maps, c, maps.contributions?.[c]));
    grids.querySelectorAll<HTMLElement>("[data-class]").forEach((el) =>
      el.classList.toggle("focused", Number(el.dataset.class) === c));
  };
  const grids = classGrids(rec, names, maps, showFocus);
  showFocus(rec.predicted);
  const bars = h("div", { class: "prob-bars", "data-testid": "prob-bars" },
    ...names.map((name, c) => h("div", { class: "pb-row" + (c === rec.predicted ? " predicted" : "") },
      h("span", { class: "pb-name", title: name }, name),
      h("span", { class: "pb-track" },
        h("span", { class: "pb teacher", style: `width:${(rec.teacher_probs[c] ?? 0) * 100}%` }),
        h("span", { class: "pb student", style: `width:${(rec.student_probs[c] ?? 0) * 100}%` })),
      h("span", { class: "pb-val" }, `${pct(rec.teacher_probs[c])} / ${pct(rec.student_probs[c])}`))));

  const nt = rec.neighbour_teacher ?? [];
  const ns = rec.neighbour_student ?? [];
  const disagree = nt.filter((t, i) => t !== ns[i]).length;
  const neigh = rec.neighbours?.length
    ? h("div", { class: "neighbours", "data-testid": "neighbour-grid" }, ...rec.neighbours.map((img, i) => {
      const t = nt[i];
      const off = t !== ns[i];
      const fig = h("figure", {
        class: "neighbour" + (off ? " disagree" : ""),
        style: `--label:${classColor(t, k)}`,
        "data-testid": "neighbour",
        title: `teacher: ${className(names, t)} · student: ${className(names, ns[i])}`,
      }, imageCanvas(img, 44), h("figcaption", {}, className(names, t)));
      if (off) fig.appendChild(h("span", { class: "nb-x", "aria-label": "student disagrees" }, "≠"));
      return fig;
    }))
    : h("p", { class: "muted" }, "No neighbour images were stored for this instance.");
  const usedLabels = [...new Set(nt)].sort((a, b) => a - b);
  const neighLegend = h("div", { class: "nb-legend" },
    ...usedLabels.map((c) => h("span", { class: "nb-key" },
      h("span", { class: "swatch", style: `background:${classColor(c, k)}` }), className(names, c))),
    h("span", { class: "nb-key wide" }, h("span", { class: "nb-x static" }, "≠"), "student disagrees with the teacher"));

  const settings = settingsTable({ ...rec.settings, schema_version: rec.schema_version });

  return [
    summary,
    h("div", { class: "sec" }, h("h4", {}, "Where the model looks"), focusSlot),
    evidenceSection(rec, why),
    maps.c === 3 ? h("div", { class: "sec" }, h("h4", {}, "Per colour channel"), channelSlot) : null,
    grids,
    h("div", { class: "sec" }, h("h4", {}, "Teacher vs student"),
      h("div", { class: "pb-legend" }, h("span", { class: "swatch teacher" }), "teacher (your model)",
        h("span", { class: "swatch student" }), "student (linear explanation)"), bars),
    h("div", { class: "sec" }, h("h4", {}, `Neighbours (${nt.length}, ${disagree} disagreements)`), neighLegend, neigh),
    h("div", { class: "sec" }, h("h4", {}, "Settings"), settings),
  ].filter((e): e is HTMLElement => e !== null);
}

// ---- maps ---------------------------------------------------------------------------------------
const CHANNELS = ["R", "G", "B"];

/** Per stored class: its weights and, when the backend sends the input, its contributions
 * (weight × input), per channel in their own units. A student over regions has one channel: each
 * region's weight drawn back onto its pixels, which is also that region's contribution. */
interface ClassMaps {
  c: number;
  h: number;
  w: number;
  classes: number[]; // the class of each entry below
  weights: Float32Array[][]; // [stored class][channel]
  contributions: Float32Array[][] | null; // [stored class][channel]
  segments: Int32Array | null; // region index per pixel (regions only)
}

function b64bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The region index of every pixel (little-endian uint16, as kind.py encodes it). */
function decodeSegments(seg: { shape: number[]; data: string }): { h: number; w: number; index: Int32Array } {
  const raw = b64bytes(seg.data);
  const [hh, w] = seg.shape;
  if (raw.length !== 2 * hh * w) throw new Error(`segments: shape [${seg.shape}] needs ${2 * hh * w} bytes, got ${raw.length}`);
  const index = new Int32Array(hh * w);
  for (let i = 0; i < index.length; i++) index[i] = raw[2 * i] | (raw[2 * i + 1] << 8);
  return { h: hh, w, index };
}

function classMaps(rec: DeepVIDRecord): ClassMaps {
  const classes = rec.classes ?? rec.weights.map((_, c) => c);
  if (rec.segments) {
    const seg = decodeSegments(rec.segments);
    const weights = rec.weights.map((m) => {
      const perRegion = decodeChannels(m).channels[0];
      const px = new Float32Array(seg.index.length);
      for (let i = 0; i < px.length; i++) px[i] = perRegion[seg.index[i]] ?? 0;
      return [px];
    });
    return { c: 1, h: seg.h, w: seg.w, classes, weights, contributions: null, segments: seg.index };
  }
  const weights = rec.weights.map((m) => decodeChannels(m));
  const { c, h: hh, w } = weights[0] ?? { c: 1, h: 1, w: 1 };
  let contributions: Float32Array[][] | null = null;
  if (rec.input) {
    const x = decodeChannels(rec.input);
    if (x.c === c && x.h === hh && x.w === w) {
      contributions = weights.map((wc) => wc.channels.map((ch, i) => ch.map((v, j) => v * x.channels[i][j])));
    }
  }
  return { c, h: hh, w, classes, weights: weights.map((m) => m.channels), contributions, segments: null };
}

function combine(channels: Float32Array[], how: "mean" | "sum"): Float32Array {
  const out = new Float32Array(channels[0].length);
  for (const ch of channels) for (let i = 0; i < out.length; i++) out[i] += ch[i];
  if (how === "mean") for (let i = 0; i < out.length; i++) out[i] /= channels.length;
  return out;
}

function peak(...arrays: Float32Array[]): number {
  let p = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) p = Math.max(p, Math.abs(a[i]));
  return Math.max(p, 1e-12);
}

/** Thin outlines of the regions over a map canvas, computed at the canvas's own resolution so
 * they stay one display pixel wide however the map is scaled. */
function outlineRegions(canvas: HTMLCanvasElement, segments: Int32Array, h: number, w: number): HTMLCanvasElement {
  const ctx = canvas.getContext("2d");
  if (!ctx) return canvas;
  const cw = canvas.width;
  const ch = canvas.height;
  const img = ctx.getImageData(0, 0, cw, ch);
  const at = (x: number, y: number) => segments[Math.min(h - 1, Math.floor((y * h) / ch)) * w + Math.min(w - 1, Math.floor((x * w) / cw))];
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      const s = at(x, y);
      if ((x + 1 < cw && at(x + 1, y) !== s) || (y + 1 < ch && at(x, y + 1) !== s)) {
        const o = (y * cw + x) * 4;
        for (let k = 0; k < 3; k++) img.data[o + k] = Math.round(0.5 * img.data[o + k] + 0.5 * 255);
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

/** A labelled map figure; `shared` puts several maps on one colour scale. */
function figure(m: Map2D, size: number, caption: string, testid: string,
  opts: { image?: EncodedImg; shared?: number; segments?: Int32Array | null }) {
  let canvas = mapCanvas(m, size, { image: opts.image, sharedScale: opts.shared, crisp: true });
  if (opts.segments) canvas = outlineRegions(canvas, opts.segments, m.h, m.w);
  return h("figure", { class: "focus-fig", "data-testid": testid }, canvas, h("figcaption", {}, caption));
}

/** The focused class (default: the predicted one): the instance, its weight and its contribution,
 * over the instance, each with its colour bar; per channel for colour images. A student over
 * regions: the instance and each region's weight, the regions outlined. */
function focus(rec: DeepVIDRecord, names: string[], maps: ClassMaps, cls: number): HTMLElement {
  const at = maps.classes.indexOf(cls);
  const name = className(names, cls);
  const title = h("p", { class: "focus-title" }, `Class “${name}”`,
    cls === rec.predicted ? h("span", { class: "muted" }, " (predicted; click a class below to look at another)")
      : h("span", { class: "muted" }, " (click a class below to look at another)"));
  const instanceFig = h("figure", { class: "focus-fig" }, imageCanvas(rec.image, 128, "img focus-img"),
    h("figcaption", {}, "instance"));
  if (at < 0) {
    return h("div", { class: "focus", "data-testid": "focus-maps", "data-class": cls }, title,
      h("div", { class: "focus-row" }, instanceFig),
      h("p", { class: "muted", "data-testid": "class-not-kept" },
        "This record keeps the maps of the teacher's most probable classes and of the true class only."));
  }
  const w = combine(maps.weights[at], "mean");
  const wMap = toMap2D(w, maps.h, maps.w);
  if (maps.segments) {
    const regions = new Set(maps.segments).size;
    return h("div", { class: "focus", "data-testid": "focus-maps", "data-class": cls }, title,
      h("div", { class: "focus-row" }, instanceFig,
        h("div", { class: "focus-col" },
          figure(wMap, 128, "region weight", "focus-weight", { image: rec.image, segments: maps.segments }),
          colorbar(wMap.scale, "region weight"))),
      h("div", { class: "map-key", "data-testid": "map-legend" },
        h("p", {}, h("b", {}, "region weight"), `: the student read ${regions} regions of this instance (outlined), each `,
          "either kept or switched off. A region's weight is what keeping it adds to the class score: ",
          "red regions push towards the class, blue ones against it. This is where the model looks."),
        h("p", { class: "muted" }, "Drawn over the instance (dimmed grey); where the colour fades to grey, " +
          "the region hardly matters.")));
  }
  const figs: HTMLElement[] = [
    instanceFig,
    h("div", { class: "focus-col" },
      figure(wMap, 128, "weight", "focus-weight", { image: rec.image }), colorbar(wMap.scale, "weight")),
  ];
  const contrib = maps.contributions?.[at];
  let cMap: Map2D | null = null;
  if (contrib) {
    cMap = toMap2D(combine(contrib, "sum"), maps.h, maps.w);
    figs.push(h("div", { class: "focus-col" },
      figure(cMap, 128, "contribution = weight × input", "focus-contribution", { image: rec.image }),
      colorbar(cMap.scale, "contribution")));
  }
  const out = h("div", { class: "focus", "data-testid": "focus-maps", "data-class": cls }, title,
    h("div", { class: "focus-row" }, ...figs),
    h("div", { class: "map-key", "data-testid": "map-legend" },
      h("p", {}, h("b", {}, "weight"), ": what the explanation multiplies each pixel by: where ink or colour ",
        h("i", {}, "would"), " push towards the class (red) or against it (blue)."),
      contrib
        ? h("p", {}, h("b", {}, "contribution = weight × input"), ": what each pixel of ", h("i", {}, "this"),
          " instance actually adds to the class score. This is where the model looks; pixels without signal add nothing.")
        : h("p", { class: "muted" }, "Contributions need the instance in the model's input units, which this backend does not send."),
      h("p", { class: "muted" }, "Both are drawn over the instance (dimmed grey); where the colour fades to grey, " +
        "the value is close to zero.")));
  return out;
}

/** Colour images: R, G and B next to their combination, one colour scale per row, so a colour cue
 * that the channel average cancels (green for, red against) stays visible. */
function channelTable(maps: ClassMaps, at: number, contrib: Float32Array[] | undefined): HTMLElement {
  const row = (label: string, channels: Float32Array[], how: "mean" | "sum", testid: string) => {
    const all = combine(channels, how);
    const shared = peak(all, ...channels);
    return h("div", { class: "chan-row", "data-testid": testid },
      h("span", { class: "chan-label" }, label),
      figure(toMap2D(all, maps.h, maps.w), 76, how === "mean" ? "mean of R, G, B" : "R + G + B", "channel-map", { shared }),
      ...channels.map((ch, i) => figure(toMap2D(ch, maps.h, maps.w), 76, CHANNELS[i] ?? `channel ${i}`,
        "channel-map", { shared })),
      h("span", { class: "chan-scale" }, colorbar(shared, label)));
  };
  return h("div", { class: "chan-maps", "data-testid": "channel-maps" },
    h("p", { class: "muted" }, "Per colour channel (each row on one colour scale): an average can hide a colour " +
      "cue, e.g. green pushing for the class and red against it."),
    row("weight", maps.weights[at], "mean", "channel-weights"),
    contrib ? row("contribution", contrib, "sum", "channel-contributions") : null);
}

/** Every stored class's weight map, then (pixels) every class's contribution, each on one shared
 * colour scale. */
function classGrids(rec: DeepVIDRecord, names: string[], maps: ClassMaps, pick: (c: number) => void): HTMLElement {
  const regions = maps.segments !== null;
  const grid = (title: string, perClass: Float32Array[], testid: string, hint: string, label: string) => {
    const decoded = perClass.map((v) => toMap2D(v, maps.h, maps.w));
    const shared = Math.max(1e-12, ...decoded.map((m) => m.scale));
    return h("div", { class: "sec" }, h("h4", {}, title), colorbar(shared, label),
      h("div", { class: "class-maps" }, ...decoded.map((m, i) => {
        const c = maps.classes[i];
        return h("figure", { class: "class-map" + (c === rec.predicted ? " predicted" : "") + (c === rec.label ? " truth" : ""),
          "data-testid": testid, "data-class": c, title: `${className(names, c)}: click to look at it above`,
          onclick: () => pick(c) },
        mapCanvas(m, 72, { sharedScale: shared, crisp: regions }),
        h("figcaption", {}, h("span", { class: "cm-name", title: className(names, c) }, className(names, c)),
          h("span", { class: "muted" }, pct(rec.student_probs[c]))));
      })),
      h("p", { class: "hint" }, hint));
  };
  const kept = maps.classes.length < names.length
    ? ` The record keeps ${maps.classes.length} of ${names.length} classes: the teacher's most probable ones and the true class.`
    : "";
  // The weight grid keeps the channel average the overview shows; contributions are summed over
  // channels (that sum is the pixel's share of the student's logit).
  const weights = maps.weights.map((chs) => combine(chs, "mean"));
  return h("div", { class: "class-grids" },
    grid(regions ? "Region weights per class" : "Weight map per class", weights, "class-map",
      (regions ? "Red regions push towards the class, blue regions against it"
        : "Red pixels push towards the class, blue pixels against it") +
      `; percentages are the student's probabilities.${kept}`, "weight"),
    maps.contributions
      ? grid("Contribution per class (weight × input)", maps.contributions.map((chs) => combine(chs, "sum")),
        "contribution-map", "What each pixel of this instance adds to each class's score, on one colour scale.",
        "contribution")
      : null);
}
