// The overview: rows are tracked instances, columns are steps. Each cell is drawn by the view of
// the kind the grid shows (views/<kind>.ts; DeepVID's and Grad-CAM's: the predicted class's map
// over the instance). Cells are painted lazily when they scroll into view, so a
// 64 x 200 grid appears at once.
import type { ViewHost } from "./host";
import { className, h, fmt } from "./dom";
import { imageCanvas } from "./draw";
import { stepLowTrust, trustReason } from "./evidence";
import type { Instance, InstancesResp, StepSummary } from "./types";
import { instanceView, type InstanceView } from "./views";

export interface Overview {
  highlight(instance: string | null, step: number | null): void;
}

const CELL = 56; // map size in px
const CELL_W = 68; // cell width incl. padding (style.css .cell)
const ROW_HEAD = 190; // style.css .row-head

export function renderOverview(app: ViewHost, parent: HTMLElement, data: InstancesResp): Overview {
  const names = data.class_names;
  const view = instanceView(app.kind);
  if (!view) throw new Error(`kind: no grid view is registered for ${JSON.stringify(app.kind)}`);
  const steps = [...new Set(data.instances.flatMap((i) => i.steps.map((s) => s.step)))].sort((a, b) => a - b);
  const cells = new Map<string, HTMLElement>();
  const rows = new Map<string, HTMLElement>();
  const key = (id: string, step: number) => `${step}\u0000${id}`;

  // A div grid, not a <table>: rows of fixed-size cells lay out in O(visible) with
  // content-visibility, where a 64 x 200 table took seconds of layout.
  const head = h("div", { class: "grid-row grid-head", role: "row" },
    h("div", { class: "corner", role: "columnheader" }, "instance \\ step"),
    ...steps.map((s) => h("div", { class: "step-head", role: "columnheader" }, String(s))));
  const tbody = h("div", { class: "grid-body", role: "rowgroup" });
  const table = h("div", { class: "grid", role: "grid", "data-testid": "overview-grid",
    style: `width:${ROW_HEAD + steps.length * CELL_W}px` }, head, tbody);
  const scroller = h("div", { class: "grid-scroll", tabindex: 0, "aria-label":
    "Overview grid. Arrow keys move the selection, Enter opens the detail panel, Escape closes it." }, table);
  // Two levels of laziness keep a 64 x 200 overview instant: a row gets its cells only when it
  // comes near the visible part of the grid, and a cell paints its canvas only when it does.
  const painters = new WeakMap<Element, () => void>();
  const builders = new WeakMap<Element, () => void>();
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      const work = builders.get(e.target) ?? painters.get(e.target);
      builders.delete(e.target);
      painters.delete(e.target);
      observer.unobserve(e.target);
      work?.();
    }
  }, { root: scroller, rootMargin: "300px" });
  const summaries = new Map<Element, [Instance, StepSummary]>();

  for (const inst of data.instances) {
    const label = inst.label;
    const rowHead = h("div", { class: "row-head", role: "rowheader", "data-testid": "instance-row-head",
      onclick: () => app.selectInstance(inst.id) },
    h("div", { class: "row-head-inner" },
      imageCanvas(inst.image, 40, "thumb-img"),
      h("div", { class: "row-meta" },
        h("span", { class: "inst-id", title: inst.id }, inst.id),
        h("span", { class: "true-label" }, label === null ? "label unknown" : `true: ${className(names, label)}`))));
    const tr = h("div", { class: "grid-row", role: "row", "data-testid": "instance-row", "data-instance": inst.id },
      rowHead);
    const build = () => {
      const byStep = new Map(inst.steps.map((s) => [s.step, s]));
      const frag = document.createDocumentFragment();
      for (const step of steps) {
        const s = byStep.get(step);
        if (!s) {
          frag.appendChild(h("div", { class: "cell missing", role: "gridcell", title: `no record at step ${step}` }, "·"));
          continue;
        }
        const [td, paint] = cellFor(view, inst, s, names);
        cells.set(key(inst.id, step), td);
        painters.set(td, paint);
        summaries.set(td, [inst, s]);
        frag.appendChild(td);
        observer.observe(td);
      }
      tr.appendChild(frag);
      tr.dataset.built = "true";
    };
    builders.set(tr, build);
    rows.set(inst.id, tr);
    observer.observe(tr);
    tbody.appendChild(tr);
  }
  const ensureRow = (id: string) => {
    const row = rows.get(id);
    const build = row && builders.get(row);
    if (row && build) { builders.delete(row); observer.unobserve(row); build(); }
  };

  // One listener each for the whole grid instead of one per cell.
  const cellOf = (ev: Event) => (ev.target as Element).closest?.(".cell") ?? null;
  tbody.addEventListener("click", (ev) => {
    const hit = summaries.get(cellOf(ev) as Element);
    if (hit) app.openDetail(hit[0].id, hit[1].step);
  });
  tbody.addEventListener("mouseover", (ev) => {
    const td = cellOf(ev) as HTMLElement | null;
    const hit = td && summaries.get(td);
    if (hit && !td.title) td.title = tooltip(view, hit[0], hit[1], names);
  });
  parent.appendChild(h("div", { class: "dv-caption" },
    `${data.instances.length} instances × ${steps.length} steps · click a cell for details, ` +
    "or use the arrow keys"));
  parent.appendChild(scroller);

  scroller.addEventListener("keydown", (ev) => {
    const inst = app.instance;
    if (!inst || app.step === null) return;
    const ids = data.instances.map((i) => i.id);
    const own = inst.steps.map((s) => s.step);
    let i = ids.indexOf(inst.id);
    let j = own.indexOf(app.step);
    switch (ev.key) {
      case "ArrowLeft": j = Math.max(0, j - 1); break;
      case "ArrowRight": j = Math.min(own.length - 1, j + 1); break;
      case "ArrowUp": i = Math.max(0, i - 1); break;
      case "ArrowDown": i = Math.min(ids.length - 1, i + 1); break;
      case "Home": j = 0; break;
      case "End": j = own.length - 1; break;
      case "Enter": app.openDetail(inst.id, app.step); ev.preventDefault(); return;
      case "Escape": app.closeDetail(); return;
      default: return;
    }
    ev.preventDefault();
    if (ids[i] !== inst.id) app.selectInstance(ids[i], app.step);
    else app.selectStep(own[j]);
  });

  let current: HTMLElement[] = [];
  return {
    highlight(id, step) {
      current.forEach((el) => el.classList.remove("selected", "selected-row"));
      current = [];
      if (id === null) return;
      const row = rows.get(id);
      if (row) { row.classList.add("selected-row"); current.push(row); }
      if (step === null) return;
      ensureRow(id);
      const cell = cells.get(key(id, step));
      if (cell) {
        cell.classList.add("selected");
        current.push(cell);
        cell.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
    },
  };
}

function tooltip(view: InstanceView, inst: Instance, s: StepSummary, names: string[]): string {
  const known = inst.label !== null;
  const why = trustReason(s.trustworthy, s.fidelity);
  return [
    `${inst.id} · step ${s.step} · ${view.label}`,
    `predicted: ${className(names, s.predicted)} (${fmt(s.probs[s.predicted], 2)})`,
    known ? `true: ${className(names, inst.label)}` : "true label unknown",
    ...view.tooltip(s),
    why ? `DON'T TRUST THIS EXPLANATION: ${why}` : "",
    s.changed ? "prediction changed at this step" : "",
  ].filter(Boolean).join("\n");
}

function cellFor(view: InstanceView, inst: Instance, s: StepSummary, names: string[]): [HTMLElement, () => void] {
  const pred = className(names, s.predicted);
  const known = inst.label !== null;
  const correct = known && s.predicted === inst.label;
  const art = h("div", { class: "cell-art" });
  const low = stepLowTrust(s);
  const td = h("div", {
    class: "cell" + (low ? " lowfi" : "") + (s.changed ? " changed" : ""),
    role: "gridcell",
    "data-testid": "overview-cell",
    "data-instance": inst.id,
    "data-step": s.step,
    "data-kind": view.kind,
    "data-trustworthy": String(s.trustworthy),
    "data-low-trust": String(low),
  },
  art,
  h("div", { class: "cell-label" + (known ? (correct ? " ok" : " bad") : "") },
    known ? (correct ? "✓ " : "✗ ") : "", pred),
  s.changed ? h("span", { class: "mark-changed", "aria-label": "prediction changed" }, "◆") : null,
  low ? h("span", { class: "mark-lowfi", "aria-label": `low trust: ${trustReason(s.trustworthy, s.fidelity)}` }, "⚠")
    : null);
  return [td, () => art.appendChild(view.cellArt(inst, s, CELL))];
}
