// Summit's attribution graph of one class at one step, as SVG: layers are ranks laid out by
// dagre; node size = activation count, edge width = influence; a node is filled with the concept
// its unit detects (Network Dissection of the same layer and run): the colour itself for a colour
// concept ("white" is white), its category's colour otherwise, light grey for units that detect
// nothing (or layers that were not dissected). So a class built from colour detectors (the
// demo's shortcut) shows at a glance. Text is drawn at its own size (>= 12 px), never scaled
// down with the graph; a wide graph scrolls.
import dagre from "@dagrejs/dagre";
import { conceptColor, inkOn } from "../colors";
import { fmt, h } from "../dom";
import type { EnvelopeRecordResp } from "../types";

const SVG = "http://www.w3.org/2000/svg";
/** Fill and border of a node whose unit detects no concept. */
export const PLAIN_FILL = "#e2e8f0";
const PLAIN_STROKE = "#64748b";
const NEW_RING = "#d97706";

export interface SummitMeta {
  class: string;
  layers: string[];
  channels: number[];
  head: string;
  images: number;
  examples_per_node: number;
  probe_counts: number[];
  stability: number | null;
  previous_step: number | null;
}

export interface GNode {
  id: string;
  layer: number;
  channel: number;
  activation: number;
  pagerank: number;
  examples: number[];
}

export interface GEdge {
  source: number;
  target: number;
  weight: number;
  count: number;
}

export interface Graph {
  step: number;
  meta: SummitMeta;
  nodes: GNode[];
  edges: GEdge[];
  activation: number[];
}

/** A layer's Network Dissection at the explained step nearest at or before a Summit step. */
export interface Dissection {
  step: number;
  labels: string[];
  /** Category of each label (meta label_category), and the categories in the record's order. */
  labelCategory: string[];
  categories: string[];
  /** Per unit: best label index, its IoU, and whether it is a detector (IoU over the threshold). */
  label: number[];
  iou: number[];
  detector: number[];
}

/** What a graph node's unit detects, when it is a Network Dissection detector. */
export interface Concept {
  name: string;
  category: string;
  iou: number;
  step: number;
}

export function conceptOf(d: Dissection | null | undefined, unit: number): Concept | null {
  if (!d || !d.detector[unit]) return null;
  const li = d.label[unit];
  if (li === undefined || li < 0 || d.labels[li] === undefined) return null;
  return { name: d.labels[li], category: d.labelCategory[li] ?? "", iou: d.iou[unit], step: d.step };
}

export function nums(v: unknown): number[] {
  return Array.isArray(v) ? v.map(Number) : [];
}

/** The record route's generic JSON as a graph (methods/summit/kind.py documents the arrays). */
export function toGraph(rec: EnvelopeRecordResp): Graph {
  const a = rec.arrays;
  const meta = rec.meta as unknown as SummitMeta;
  const layer = nums(a.node_layer), channel = nums(a.node_channel), act = nums(a.node_activation);
  const pr = nums(a.node_pagerank), ex = nums(a.node_examples);
  const e = meta.examples_per_node;
  const nodes = layer.map((li, i) => ({
    id: `${meta.layers[li]}:${channel[i]}`, layer: li, channel: channel[i], activation: act[i],
    pagerank: pr[i], examples: ex.slice(i * e, (i + 1) * e).filter((r) => r >= 0),
  }));
  const src = nums(a.edge_source), dst = nums(a.edge_target), w = nums(a.edge_weight), c = nums(a.edge_count);
  const edges = src.map((s, i) => ({ source: s, target: dst[i], weight: w[i], count: c[i] }));
  return { step: rec.step, meta, nodes, edges, activation: nums(a.activation) };
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>,
  ...children: (SVGElement | string)[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** A node's fill: its concept's colour, or light grey. */
export function nodeFill(concept: Concept | null): string {
  return concept ? conceptColor(concept.name, concept.category) : PLAIN_FILL;
}

export interface GraphOptions {
  graph: Graph;
  rec: EnvelopeRecordResp;
  prev: Graph | null;
  concepts: (Concept | null)[];
  selected: string | null;
  className: string;
  onPick(node: GNode): void;
}

export function graphSvg(o: GraphOptions): SVGSVGElement {
  const { graph, rec, prev, concepts } = o;
  const { meta, nodes, edges } = graph;
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "BT", nodesep: 14, ranksep: 66, marginx: 6, marginy: 14 });
  g.setDefaultEdgeLabel(() => ({}));
  const layers = meta.layers.length;
  const isClass = (n: GNode) => n.layer === layers - 1;
  const maxAct = Math.max(1, ...nodes.map((n) => (isClass(n) ? 0 : n.activation)));
  const radius = (n: GNode) => (isClass(n) ? 0 : 7 + 13 * Math.sqrt(n.activation / maxAct));
  // Layers are ranks: invisible anchors, one per layer and chained, hold every node between the
  // anchors of the layers below and above it. With every edge at its minimum length (the only
  // optimum of dagre's network-simplex ranking) a node sits exactly at its layer's rank.
  for (let li = 0; li < layers; li++) {
    g.setNode(`@${li}`, { width: 0, height: 0 });
    if (li > 0) g.setEdge(`@${li - 1}`, `@${li}`, { minlen: 1, weight: 1 });
  }
  // A channel's number sits right of its circle; its concept name centred under it, so a
  // labelled node is hardly wider than an unlabelled one. Its box is as wide as the name.
  nodes.forEach((n, i) => {
    const named = !isClass(n) && concepts[i] ? 7.4 * concepts[i]!.name.length + 10 : 0;
    g.setNode(`n${i}`, { width: isClass(n) ? Math.max(64, 9 * (meta.class.length + 6)) : Math.max(46, named),
      height: isClass(n) ? 28 : 44 });
    if (n.layer > 0) g.setEdge(`@${n.layer - 1}`, `n${i}`, { minlen: 1, weight: 1 });
    if (n.layer + 1 < layers) g.setEdge(`n${i}`, `@${n.layer + 1}`, { minlen: 1, weight: 1 });
  });
  for (const e of edges) {
    const span = Math.max(1, nodes[e.target].layer - nodes[e.source].layer);
    g.setEdge(`n${e.source}`, `n${e.target}`, { minlen: span, weight: 2 + 4 * e.weight });
  }
  dagre.layout(g);
  const pos = nodes.map((_, i) => g.node(`n${i}`));
  const xs = pos.map((p) => p.x), ys = pos.map((p) => p.y);
  const labelW = 84;
  const x0 = Math.min(...xs) - 34 - labelW, x1 = Math.max(...xs) + 46;
  // room under the lowest layer for its concept names
  const y0 = Math.min(...ys) - 28, y1 = Math.max(...ys) + (concepts.some((c) => c) ? 44 : 30);
  // drawn at 1:1, so 12-px text stays 12 px; a graph wider than its box scrolls
  const root = svg("svg", { viewBox: `${x0} ${y0} ${x1 - x0} ${y1 - y0}`, width: Math.ceil(x1 - x0),
    height: Math.ceil(y1 - y0), "data-testid": "summit-graph", "data-class": meta.class, "data-step": graph.step,
    "data-nodes": nodes.length, role: "img", "aria-label": `Attribution graph of class ${meta.class} at step ${graph.step}`,
    style: "font:12px system-ui,'DejaVu Sans',sans-serif;display:block" });
  for (let li = 0; li < layers; li++) {
    const at = nodes.map((n, i) => (n.layer === li ? pos[i].y : NaN)).filter((y) => !Number.isNaN(y));
    if (!at.length) continue;
    root.append(svg("text", { x: x0 + 4, y: at[0] + 4, fill: "#4b5563" },
      li === layers - 1 ? `${meta.layers[li]} (class)` : meta.layers[li]));
  }
  const previous = prev ? new Set(prev.nodes.map((n) => n.id)) : null;
  const maxW = Math.max(...edges.map((e) => e.weight), 1e-9);
  const rankYs = [...new Set(ys)];
  for (const e of edges) {
    // From centre to centre (the nodes cover the ends), through dagre's route where a long
    // edge (a residual shortcut) crosses a layer, as vertical S-curves.
    const via = (g.edge(`n${e.source}`, `n${e.target}`).points ?? []).slice(1, -1)
      .filter((p: { x: number; y: number }) => rankYs.some((y) => Math.abs(p.y - y) < 1));
    const pts = [pos[e.source], ...via, pos[e.target]];
    let d = `M${pts[0].x},${pts[0].y}`;
    for (let i = 1; i < pts.length; i++) {
      const a = pts[i - 1], b = pts[i], my = (a.y + b.y) / 2;
      d += ` C${a.x},${my} ${b.x},${my} ${b.x},${b.y}`;
    }
    root.append(svg("path", { d, fill: "none", stroke: "#64748b", "stroke-opacity": 0.25 + 0.45 * (e.weight / maxW),
      "stroke-width": 0.8 + 7 * e.weight, "stroke-linejoin": "round", "data-testid": "summit-edge" },
    svg("title", {}, `${nodes[e.source].id} → ${nodes[e.target].id}: among the top inputs in ` +
      `${Math.round(100 * e.weight)}% of the class's images (${e.count})`)));
  }
  nodes.forEach((n, i) => {
    const p = pos[i];
    const isNew = previous !== null && !isClass(n) && !previous.has(n.id);
    const selected = n.id === o.selected;
    const concept = isClass(n) ? null : concepts[i];
    const title = svg("title", {}, isClass(n) ? `class ${meta.class}` :
      `${n.id}: top ${fmt(100 * (rec.settings.top_share as number ?? 0.03), 0)}% of its layer's activation in ` +
      `${n.activation} of ${meta.images} images · PageRank ${fmt(n.pagerank, 4)}` + (isNew ? " · new in this step's graph" : "") +
      (concept ? ` · Network Dissection (step ${concept.step}): a ${concept.category} detector, “${concept.name}”, IoU ${fmt(concept.iou, 3)}`
        : " · not a Network Dissection detector"));
    const fill = nodeFill(concept);
    const group = svg("g", { "data-testid": "summit-node", "data-node": n.id, "data-new": String(isNew),
      "data-fill": fill, ...(concept ? { "data-concept": concept.name, "data-category": concept.category } : {}),
      style: "cursor:pointer", tabindex: 0 }, title);
    if (isClass(n)) {
      const w = g.node(`n${i}`).width;
      group.append(svg("rect", { x: p.x - w / 2, y: p.y - 14, width: w, height: 28, rx: 6, fill: "#c2410c",
        stroke: selected ? "#111827" : "none", "stroke-width": 2 }),
      svg("text", { x: p.x, y: p.y + 4, "text-anchor": "middle", fill: "#fff", "font-weight": 600 }, meta.class));
    } else {
      const r = radius(n);
      if (isNew) {
        group.append(svg("circle", { cx: p.x, cy: p.y, r: r + 4, fill: "none", stroke: NEW_RING, "stroke-width": 2.5,
          "stroke-dasharray": "4 3", "data-testid": "summit-new-ring" }));
      }
      group.append(svg("circle", { cx: p.x, cy: p.y, r, fill, "data-testid": "summit-node-disc",
        stroke: selected ? "#111827" : concept ? "#374151" : PLAIN_STROKE, "stroke-width": selected ? 3.5 : 1.5 }),
      // the channel number inside the disc where it fits, in ink that reads on the fill
      r >= 11 ? svg("text", { x: p.x, y: p.y + 4, "text-anchor": "middle", fill: inkOn(fill), "font-weight": 600 },
        String(n.channel))
        : svg("text", { x: p.x + r + 4, y: p.y + 4, fill: "#111827" }, String(n.channel)));
      if (concept) {
        // a white halo keeps the name legible over the edges that reach the node
        group.append(svg("text", { x: p.x, y: p.y + r + 15, "text-anchor": "middle",
          fill: "#111827", "font-weight": 600,
          stroke: "#fff", "stroke-width": 3.5, "paint-order": "stroke", "stroke-linejoin": "round",
          "data-testid": "summit-node-concept" }, concept.name));
      }
    }
    group.addEventListener("click", () => o.onPick(n));
    group.addEventListener("keydown", (ev) => { if ((ev as KeyboardEvent).key === "Enter") o.onPick(n); });
    root.append(group);
  });
  return root;
}

/** The key to every mark of the graph: node colours (the concepts present), size, edge width,
 * the new-in-this-step ring, the selection and the class node. */
export function graphLegend(concepts: (Concept | null)[], prev: Graph | null): HTMLElement {
  const found = concepts.filter((c): c is Concept => c !== null);
  const byName = new Map(found.map((c) => [`${c.category}\u0000${c.name}`, c]));
  const steps = [...new Set(found.map((c) => c.step))].sort((a, b) => a - b);
  const dot = (fill: string, stroke = "#374151") =>
    h("span", { class: "summit-dot", style: `background:${fill};border-color:${stroke}` });
  return h("div", { class: "summit-legend", "data-testid": "summit-concept-legend" },
    h("span", {}, found.length ? `Node colour: what the unit detects (Network Dissection, step ${steps.join(", ")}):`
      : "Node colour: what the unit detects (Network Dissection):"),
    ...[...byName.values()].map((c) => h("span", { class: "summit-legend-item", "data-category": c.category,
      "data-concept": c.name }, dot(nodeFill(c)), c.category === "color" ? c.name : `${c.name} (${c.category})`)),
    h("span", { class: "summit-legend-item" }, dot(PLAIN_FILL, PLAIN_STROKE), "no concept (not a detector, or not dissected)"),
    h("span", { class: "summit-legend-item" }, h("span", { class: "summit-size" }, "●", h("small", {}, "●")),
      "size: images of the class where the channel is among its layer's most active"),
    h("span", { class: "summit-legend-item" }, h("span", { class: "summit-edge-key" }), "edge width: influence"),
    prev ? h("span", { class: "summit-legend-item" }, h("span", { class: "summit-dot new" }),
      `dashed ring: not in step ${prev.step}'s graph`) : null,
    h("span", { class: "summit-legend-item" }, h("span", { class: "summit-class-key" }), "the class"));
}
