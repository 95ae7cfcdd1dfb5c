// Summit (Hohman et al., TVCG 2020): one record per class per explained step, the class's
// attribution graph (deepvid_plugin/methods/summit/kind.py). The page shows
// - an overview of classes x steps, coloured by stability (Jaccard of the graph's node set with
//   the previous explained step's);
// - the selected class's graph (summit_graph.ts), with a step slider; each node filled with the
//   concept its unit detects where Network Dissection ran on the same layer of the same run, so a
//   model built from colour detectors (a shortcut) shows at a glance;
// - the selected node: its top probe images and its Network Dissection label;
// - a channel x step strip of the class's activation counts in one layer.
import { interpolateBlues, interpolateRdYlGn } from "d3-scale-chromatic";
import { kindParams } from "../data";
import { inkOn } from "../colors";
import { clear, fmt, h } from "../dom";
import { imageCanvas } from "../draw";
import type { ViewHost } from "../host";
import { errorBox } from "../states";
import type { EncodedMap, EnvelopeRecordResp, Instance, InstancesResp, StepSummary } from "../types";
import { conceptOf, graphLegend, graphSvg, nums, toGraph, type Dissection, type Graph, type GNode,
  type SummitMeta } from "./summit_graph";
import { pageShell } from "./page";
import { registerView } from "./registry";

const KIND = "summit";
/** Channels the strip shows at most (the most active ones when a layer has more). */
const STRIP_MAX = 48;

interface SummitStep extends StepSummary {
  stability?: number | null;
  nodes?: number;
  edges?: number;
  images?: number;
}

function stabilityColor(v: number | null | undefined): string {
  return typeof v === "number" ? interpolateRdYlGn(0.1 + 0.8 * Math.max(0, Math.min(1, v))) : "#eef0f3";
}

/** Thumbnail `j` of a (P, C, h, w) probe array as a canvas `size` px wide. */
function probeCanvas(probe: EncodedMap, j: number, size: number): HTMLCanvasElement {
  const [, c, hh, ww] = probe.shape;
  const bin = atob(probe.data);
  const n = hh * ww;
  const img = new ImageData(ww, hh);
  for (let i = 0; i < n; i++) {
    const px = (ch: number) => {
      const b = bin.charCodeAt((j * c + ch) * n + i);
      return Math.round(((b > 127 ? b - 256 : b) / 127) * probe.scale);
    };
    const rgb = c === 3 ? [px(0), px(1), px(2)] : [px(0), px(0), px(0)];
    img.data.set([...rgb, 255], i * 4);
  }
  const src = document.createElement("canvas");
  src.width = ww;
  src.height = hh;
  src.getContext("2d")!.putImageData(img, 0, 0);
  const out = document.createElement("canvas");
  out.width = size;
  out.height = Math.round((size * hh) / ww);
  const ctx = out.getContext("2d")!;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, out.width, out.height);
  out.className = "summit-example";
  out.style.cssText = "border:1px solid #e5e7eb;border-radius:3px";
  return out;
}

class SummitPage {
  private readonly rows: Instance[];
  private readonly steps: number[];
  private cls: Instance;
  private step: number;
  private node: string | null = null;
  private stripLayer: number | null = null;
  private readonly cells = new Map<string, HTMLElement>();
  private readonly graphBox = h("div", { "data-testid": "summit-graph-box" });
  private readonly title = h("h3", { style: "margin:0" });
  private readonly slider = h("input", { type: "range", min: 0, step: 1, "data-testid": "summit-epoch",
    "aria-label": "Step", style: "flex:1;min-width:160px" });
  private readonly epochLabel = h("span", { class: "pill", "data-testid": "summit-epoch-label" });
  private readonly detail = h("div", { "data-testid": "summit-node-detail",
    style: "min-height:90px;border-top:1px solid #e5e7eb;padding-top:8px;margin-top:8px" });
  private readonly strip = h("div", { "data-testid": "summit-strip" });
  private draws = 0;
  /** Network Dissection of (layer, Summit step), fetched once (null: not dissected). */
  private readonly dissections = new Map<string, Promise<Dissection | null>>();

  constructor(private readonly host: ViewHost, private readonly run: string,
    private readonly data: InstancesResp, parent: HTMLElement) {
    this.rows = data.instances;
    this.steps = [...new Set(this.rows.flatMap((r) => r.steps.map((s) => s.step)))].sort((a, b) => a - b);
    this.cls = this.rows[0];
    this.step = this.cls.steps[this.cls.steps.length - 1].step;
    this.slider.addEventListener("input", () => {
      const s = this.cls.steps[Number(this.slider.value)];
      if (s) this.select(this.cls.id, s.step);
    });
    parent.appendChild(h("div", { class: "dv-page summit", "data-testid": "page-view", "data-kind": KIND,
      "data-has-data": "true", style: "padding:12px 16px;display:flex;flex-direction:column;gap:12px" },
    h("div", {},
      h("h2", { style: "margin:0 0 4px" }, "Summit: what each class depends on"),
      h("p", { class: "muted", style: "margin:0;max-width:920px" },
        "Per class, the channels that fire most for its images and the channels below that drive them, " +
        "aggregated over a fixed probe set (Hohman et al., TVCG 2020). Stability is the Jaccard index of " +
        "a class's graph nodes with those of the previous explained step: 1 means the class relies on " +
        "the same channels as before.")),
    h("div", { style: "display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap" },
      // left: the overview and, under it, the selected class's strip; right: its graph
      h("div", { style: "flex:0 1 auto;max-width:100%;display:flex;flex-direction:column;gap:16px" },
        h("section", { class: "card", style: "overflow:auto" }, this.overview()),
        h("section", { class: "card", style: "overflow:auto;max-width:520px" }, this.strip)),
      h("section", { class: "card", style: "flex:1 1 560px;min-width:420px" },
        h("div", { style: "display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:6px" },
          this.title, this.epochLabel, this.slider),
        this.graphBox, this.detail))));
    this.select(this.cls.id, this.step);
  }

  // ---- classes x steps -----------------------------------------------------------------------
  private overview(): HTMLElement {
    const cellW = 46;
    const head = h("tr", {}, h("th", { style: "text-align:left;padding:2px 6px" }, "class \\ step"),
      ...this.steps.map((s) => h("th", { style: `width:${cellW}px;font-weight:500;color:#6b7280` }, String(s))));
    const body = this.rows.map((row) => {
      const byStep = new Map(row.steps.map((s) => [s.step, s as SummitStep]));
      return h("tr", { "data-testid": "summit-row", "data-class": row.id },
        h("th", { style: "text-align:left;padding:2px 6px;white-space:nowrap;font-weight:500" },
          h("span", { style: "display:inline-flex;align-items:center;gap:6px" },
            imageCanvas(row.image, 22, "thumb-img"), row.id)),
        ...this.steps.map((step) => {
          const s = byStep.get(step);
          if (!s) return h("td", {});
          const v = s.headline ?? null;
          const cell = h("td", {
            "data-testid": "summit-cell", "data-class": row.id, "data-step": step,
            "data-stability": v === null ? "" : String(v),
            title: `class ${row.id} · step ${step}: ` + (v === null
              ? "first explained step (nothing to compare with)"
              : `stability ${fmt(v)} (Jaccard with the previous explained step)`) +
              ` · ${s.nodes ?? "?"} nodes, ${s.edges ?? "?"} edges, ${s.images ?? "?"} images`,
            style: `background:${stabilityColor(v)};text-align:center;cursor:pointer;font-size:12px;` +
              `padding:5px 2px;border:2px solid #fff;color:${inkOn(stabilityColor(v))}`,
            onclick: () => this.select(row.id, step),
          }, v === null ? "–" : fmt(v));
          this.cells.set(`${row.id}\u0000${step}`, cell);
          return cell;
        }));
    });
    const stops = [0, 0.25, 0.5, 0.75, 1].map((v) => `${stabilityColor(v)} ${v * 100}%`).join(", ");
    return h("div", {},
      h("h3", { style: "margin:0 0 6px" }, "Stability by class and step"),
      h("table", { "data-testid": "summit-overview", style: "border-collapse:collapse" },
        h("thead", {}, head), h("tbody", {}, ...body)),
      h("div", { class: "muted", style: "display:flex;gap:6px;align-items:center;font-size:12px;margin-top:6px" },
        "0 (all new channels)",
        h("span", { style: `width:120px;height:10px;border-radius:2px;background:linear-gradient(to right, ${stops})` }),
        "1 (same channels) · – first step"));
  }

  // ---- selection -----------------------------------------------------------------------------
  private select(clsId: string, step: number): void {
    const row = this.rows.find((r) => r.id === clsId);
    if (!row) return;
    if (row !== this.cls) this.node = null;
    this.cls = row;
    const steps = row.steps.map((s) => s.step);
    this.step = steps.includes(step) ? step : steps[steps.length - 1];
    for (const [key, cell] of this.cells) {
      const on = key === `${row.id}\u0000${this.step}`;
      cell.style.outline = on ? "2px solid #111827" : "";
      cell.setAttribute("aria-selected", String(on));
    }
    this.slider.max = String(steps.length - 1);
    this.slider.value = String(steps.indexOf(this.step));
    this.slider.disabled = steps.length < 2;
    this.title.textContent = `Class ${row.id}`;
    this.epochLabel.textContent = `step ${this.step}`;
    void this.drawGraph();
    void this.drawStrip();
  }

  private record(cls: string, step: number): Promise<EnvelopeRecordResp> {
    return this.host.source.get<EnvelopeRecordResp>("record",
      { run: this.run, instance: cls, step: String(step), ...kindParams(KIND) });
  }

  // ---- the layered graph ---------------------------------------------------------------------
  private async drawGraph(): Promise<void> {
    const ticket = ++this.draws;
    const cls = this.cls, step = this.step;
    let rec: EnvelopeRecordResp;
    let prev: Graph | null = null;
    try {
      rec = await this.record(cls.id, step);
      this.host.addWarnings(rec.warnings);
      const p = (rec.meta as unknown as SummitMeta).previous_step;
      if (typeof p === "number" && cls.steps.some((s) => s.step === p)) prev = toGraph(await this.record(cls.id, p));
    } catch (err) {
      if (ticket !== this.draws) return;
      clear(this.graphBox);
      this.graphBox.appendChild(errorBox(err, `the Summit graph of class ${cls.id} at step ${step}`));
      return;
    }
    if (ticket !== this.draws) return; // the user moved on meanwhile
    const graph = toGraph(rec);
    // The concepts of the graph's channel layers (the class layer is not dissected).
    const layerNames = graph.meta.layers.slice(0, -1);
    const dissected = await Promise.all(layerNames.map((l) => this.dissection(l, step)));
    if (ticket !== this.draws) return;
    const concepts = graph.nodes.map((n) => conceptOf(dissected[n.layer], n.channel));
    clear(this.graphBox);
    this.graphBox.append(
      h("div", { class: "summit-graph-scroll" }, graphSvg({ graph, rec, prev, concepts, selected: this.node,
        className: this.cls.id, onPick: (n: GNode) => { this.node = n.id; void this.drawGraph(); } })),
      graphLegend(concepts, prev));
    const sel = graph.nodes.find((n) => n.id === this.node) ?? null;
    this.showNode(graph, rec, sel);
  }

  // ---- node detail ---------------------------------------------------------------------------
  private showNode(graph: Graph, rec: EnvelopeRecordResp, n: GNode | null): void {
    clear(this.detail);
    if (!n) {
      this.detail.appendChild(h("p", { class: "muted", style: "margin:0" },
        "Click a node to see the probe images that excite its channel most."));
      return;
    }
    const { meta } = graph;
    const isClass = n.layer === meta.layers.length - 1;
    const examples = h("div", { "data-testid": "summit-examples", style: "display:flex;gap:6px;flex-wrap:wrap" });
    const dissect = h("div", { "data-testid": "summit-dissection" });
    this.detail.append(
      h("div", { style: "display:flex;gap:8px;align-items:baseline;flex-wrap:wrap" },
        h("strong", {}, isClass ? `class ${meta.class} (${meta.layers[n.layer]}:${n.channel})` : n.id),
        isClass ? null : h("span", { class: "pill" }, `activation ${n.activation} of ${meta.images} images`),
        h("span", { class: "muted" }, `PageRank ${fmt(n.pagerank, 4)}`),
        h("span", { class: "muted" }, isClass ? "images with the highest logit:" : "probe images where it fires most:")),
      examples, dissect);
    void this.fillExamples(examples, rec, n, graph);
    if (!isClass) void this.fillDissection(dissect, meta.layers[n.layer], n.channel, graph.step);
  }

  private async fillExamples(box: HTMLElement, rec: EnvelopeRecordResp, n: GNode, graph: Graph): Promise<void> {
    const counts = graph.meta.probe_counts;
    const names = rec.class_names;
    for (const ref of n.examples) {
      let c = 0, offset = 0;
      while (c < counts.length && ref >= offset + counts[c]) offset += counts[c++];
      if (c >= counts.length) continue;
      try {
        const other = c === rec.meta.label ? rec : await this.record(names[c], graph.step);
        const probe = other.arrays.probe;
        if (!probe || Array.isArray(probe)) continue;
        box.appendChild(h("figure", { style: "margin:0;text-align:center;font-size:11px", title: `a probe image of class ${names[c]}` },
          probeCanvas(probe, ref - offset, 56), h("figcaption", { class: "muted" }, names[c])));
      } catch {
        box.appendChild(h("span", { class: "muted" }, `(an image of class ${names[c]} is not in this run's data)`));
      }
    }
  }

  /** The Network Dissection of `layer` at the explained step nearest at or before `step` (the
   * first one when none is before), or null where that kind did not run on this layer. */
  private dissection(layer: string, step: number): Promise<Dissection | null> {
    const key = `${layer}\u0000${step}`;
    let hit = this.dissections.get(key);
    if (!hit) {
      hit = this.loadDissection(layer, step);
      this.dissections.set(key, hit);
    }
    return hit;
  }

  private async loadDissection(layer: string, step: number): Promise<Dissection | null> {
    if (!this.host.kinds.some((k) => k.kind === "netdissect")) return null;
    try {
      const tl = await this.host.source.get<{ steps: { step: number }[] }>("timeline",
        { run: this.run, instance: layer, ...kindParams("netdissect") });
      const steps = tl.steps.map((s) => s.step).sort((a, b) => a - b);
      const at = [...steps].reverse().find((s) => s <= step) ?? steps[0];
      if (at === undefined) return null;
      const rec = await this.host.source.get<EnvelopeRecordResp>("record",
        { run: this.run, instance: layer, step: String(at), ...kindParams("netdissect") });
      const labels = rec.meta.labels as string[] | undefined;
      if (!Array.isArray(labels)) return null;
      const strs = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
      return { step: at, labels, labelCategory: strs(rec.meta.label_category), categories: strs(rec.meta.categories),
        label: nums(rec.arrays.label), iou: nums(rec.arrays.iou), detector: nums(rec.arrays.detector) };
    } catch {
      return null; // not dissected (another layer, or another run): nothing to add
    }
  }

  /** The unit's Network Dissection label, where that kind ran on the same layer of this run. */
  private async fillDissection(box: HTMLElement, layer: string, unit: number, step: number): Promise<void> {
    const d = await this.dissection(layer, step);
    const li = d?.label[unit];
    if (!d || li === undefined) return;
    box.appendChild(h("p", { style: "margin:6px 0 0", "data-testid": "summit-dissection-label" },
      "Network Dissection (step ", String(d.step), "): ", h("strong", {}, d.labels[li] ?? `label ${li}`),
      ` · IoU ${fmt(d.iou[unit], 3)}`, d.detector[unit] ? " · a detector" : " · below the detector threshold"));
  }

  // ---- channel x step strip -------------------------------------------------------------------
  private async drawStrip(): Promise<void> {
    const cls = this.cls;
    let graphs: Graph[];
    try {
      graphs = (await Promise.all(cls.steps.map((s) => this.record(cls.id, s.step)))).map(toGraph);
    } catch (err) {
      clear(this.strip);
      this.strip.appendChild(errorBox(err, `the activation counts of class ${cls.id}`));
      return;
    }
    if (cls !== this.cls || !graphs.length) return;
    const meta = graphs[graphs.length - 1].meta;
    const graphLayers = meta.layers.length - 1;
    const li = this.stripLayer !== null && this.stripLayer < graphLayers ? this.stripLayer : graphLayers - 1;
    const offset = meta.channels.slice(0, li).reduce((a, b) => a + b, 0);
    const size = meta.channels[li];
    const counts = graphs.map((g) => g.activation.slice(offset, offset + size));
    const images = Math.max(1, ...graphs.map((g) => g.meta.images));
    let channels = [...Array(size).keys()];
    if (size > STRIP_MAX) {
      const peak = channels.map((c) => Math.max(...counts.map((row) => row[c])));
      channels = channels.sort((a, b) => peak[b] - peak[a] || a - b).slice(0, STRIP_MAX).sort((a, b) => a - b);
    }
    const current = graphs.find((g) => g.step === this.step);
    const inGraph = new Set(current?.nodes.filter((n) => n.layer === li).map((n) => n.channel) ?? []);
    const select = h("select", { "data-testid": "summit-strip-layer", "aria-label": "Layer" },
      ...meta.layers.slice(0, graphLayers).map((name, i) => h("option", { value: i, selected: i === li }, name)));
    select.addEventListener("change", () => { this.stripLayer = Number(select.value); void this.drawStrip(); });
    const cell = 26;
    const grid = h("div", { style: `display:grid;grid-template-columns:64px repeat(${graphs.length}, ${cell}px) 16px;` +
      "gap:1px;font-size:10px;align-items:center" },
    h("span", { class: "muted" }, "ch \\ step"),
    ...graphs.map((g) => h("span", { class: "muted", style: "text-align:center" + (g.step === this.step ? ";font-weight:700;color:#111827" : "") }, String(g.step))),
    h("span", {}));
    for (const c of channels) {
      grid.append(h("span", { class: "muted", style: "text-align:right;padding-right:4px" }, `ch ${c}`));
      graphs.forEach((g, t) => {
        const v = counts[t][c] ?? 0;
        grid.append(h("span", { "data-testid": "summit-strip-cell", "data-channel": c, "data-step": g.step,
          title: `${meta.layers[li]}:${c} at step ${g.step}: top activation in ${v} of ${g.meta.images} images`,
          style: `height:12px;background:${interpolateBlues(0.05 + 0.95 * Math.min(1, v / images))}` }));
      });
      grid.append(h("span", { style: "color:#2563eb;text-align:center", title: inGraph.has(c) ? "in the graph at the selected step" : "" },
        inGraph.has(c) ? "●" : ""));
    }
    clear(this.strip);
    this.strip.dataset.layer = meta.layers[li];
    this.strip.dataset.step = String(this.step);
    this.strip.append(
      h("div", { style: "display:flex;gap:10px;align-items:center;margin-bottom:6px;flex-wrap:wrap" },
        h("h3", { style: "margin:0" }, `Activation counts of class ${cls.id}`), select),
      h("p", { class: "muted", style: "margin:0 0 6px;font-size:12px" }, (size > STRIP_MAX
        ? `The ${STRIP_MAX} most active of ${size} channels, by step. ` : "Channel by step. ") +
        "Darker = more of the class's images carry the channel in the top share of the layer's " +
        "activation; ● = in the selected step's graph."),
      grid);
  }
}

registerView({
  kind: "summit",
  label: "Summit",
  description: "Summit: per class, the attribution graph of the channels that make it up, step by step",
  layout: "page",
  render(host, parent, run, info) {
    if (info === null || host.run === null) {
      parent.appendChild(pageShell(KIND, "Summit", "Add a SummitExplainer to the callback to see, per " +
        "class, the graph of channels that make it up.", run, info));
      return;
    }
    const runId = host.run;
    const box = h("div", { "data-testid": "summit-loading", class: "dv-state loading" }, h("div", { class: "spinner" }), "Loading Summit…");
    parent.appendChild(box);
    host.source.get<InstancesResp>("instances", { run: runId, ...kindParams(KIND) }).then((data) => {
      if (!box.isConnected) return; // the user left the page (or picked another run) meanwhile
      host.addWarnings(data.warnings);
      box.remove();
      if (!data.instances.length) {
        parent.appendChild(pageShell(KIND, "Summit", "No class of this run has a readable Summit graph.", run, null));
        return;
      }
      new SummitPage(host, runId, data, parent);
    }, (err) => {
      if (!box.isConnected) return;
      box.remove();
      parent.appendChild(errorBox(err, "the Summit classes"));
    });
  },
});
