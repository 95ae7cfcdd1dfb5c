// The overview: rows are tracked instances, columns are steps. Each cell is drawn by the view of
// the kind the grid shows (views/<kind>.ts; DeepVID's and Grad-CAM's: a map of the predicted
// class over the instance). The overview answer carries what every cell's marks need (prediction,
// trust, change); a row asks for its maps (its `timeline`) when it comes near the visible part of
// the grid, and a cell paints when it does, so a 64 x 200 grid appears at once and moves little.
import type { ViewHost } from "./host";
import { className, h, fmt } from "./dom";
import { imageCanvas } from "./draw";
import { stepLowTrust, trustReason } from "./evidence";
import type { GridStep, Instance, InstancesResp, StepSummary } from "./types";
import { instanceView, type InstanceView } from "./views";

export interface Overview {
  /** Mark the selected row and cell, and scroll the cell into view. */
  highlight(instance: string | null, step: number | null): void;
  /** Scroll so the cell is visible left of `rightEdge` (a viewport x: a panel's left edge) and
   * inside the window; `inset` px of room are added after the last step for that. */
  reveal(instance: string, step: number, rightEdge: number, inset: number): void;
  /** The scroll box, and the steps of the columns (the metric strip lines up with them). */
  readonly scroller: HTMLElement;
  readonly steps: readonly number[];
}

export const CELL = 56; // map size in px
export const CELL_W = 68; // cell width incl. padding (style.css .cell)
export const ROW_HEAD = 190; // style.css .row-head

/** `s` with `thumb` replaced by the cell map `key` when the summary has it. */
function withMap(s: StepSummary, key: string | null): StepSummary {
  if (!key || key === "thumb" || !s[key]) return s;
  return { ...s, thumb: s[key] as StepSummary["thumb"] };
}

export function renderOverview(app: ViewHost, parent: HTMLElement, data: InstancesResp,
  mapKey: string | null): Overview {
  const names = data.class_names;
  const view = instanceView(app.kind);
  if (!view) throw new Error(`kind: no grid view is registered for ${JSON.stringify(app.kind)}`);
  const steps = [...new Set(data.instances.flatMap((i) => i.steps.map((s) => s.step)))].sort((a, b) => a - b);
  const cells = new Map<string, HTMLElement>();
  const rows = new Map<string, HTMLElement>();
  const key = (id: string, step: number) => `${step}\u0000${id}`;
  const width = ROW_HEAD + steps.length * CELL_W;

  // A div grid, not a <table>: rows of fixed-size cells lay out in O(visible) with
  // content-visibility, where a 64 x 200 table took seconds of layout.
  const head = h("div", { class: "grid-row grid-head", role: "row" },
    h("div", { class: "corner", role: "columnheader" }, "instance \\ step"),
    ...steps.map((s) => h("div", { class: "step-head", role: "columnheader", "data-step": s }, String(s))));
  const tbody = h("div", { class: "grid-body", role: "rowgroup" });
  const table = h("div", { class: "grid", role: "grid", "data-testid": "overview-grid",
    style: `width:${width}px` }, head, tbody);
  const scroller = h("div", { class: "grid-scroll", tabindex: 0, "data-testid": "grid-scroll", "aria-label":
    "Overview grid. Arrow keys move the selection, Enter opens the detail panel, Escape closes it." }, table);
  // Two levels of laziness: a row gets its cells (and asks for its maps) only when it comes near
  // the visible part of the grid, and a cell paints its canvas only when it does.
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
  const summaries = new Map<Element, [Instance, GridStep]>();
  const full = new Map<string, Map<number, StepSummary>>(); // rows whose timeline has arrived

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
      const maps = app.timeline(inst.id).then((tl) => {
        const got = new Map(tl.steps.map((s) => [s.step, s]));
        full.set(inst.id, got);
        tr.dataset.maps = "true";
        return got;
      });
      maps.catch(() => { tr.dataset.maps = "failed"; });
      const frag = document.createDocumentFragment();
      for (const step of steps) {
        const s = byStep.get(step);
        if (!s) {
          frag.appendChild(h("div", { class: "cell missing", role: "gridcell", title: `no record at step ${step}` }, "·"));
          continue;
        }
        const [td, art] = cellFor(view, inst, s, names);
        cells.set(key(inst.id, step), td);
        painters.set(td, () => {
          maps.then((got) => {
            const whole = got.get(step);
            if (whole?.thumb) art.appendChild(view.cellArt(inst, withMap(whole, mapKey), CELL));
            else art.appendChild(h("span", { class: "cell-nomap", title: "no map in this step's summary" }, "–"));
            td.dataset.painted = "true";
          }, () => art.appendChild(h("span", { class: "cell-nomap", title: "the maps of this row could not be read" }, "!")));
        });
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
    if (!hit) return;
    const whole = full.get(hit[0].id)?.get(hit[1].step);
    // the whole summary once the row's maps are in (its evidence numbers), the grid's before
    if (!td.title || (whole && td.dataset.titled !== "full")) {
      td.title = tooltip(view, hit[0], whole ?? hit[1], names);
      td.dataset.titled = whole ? "full" : "grid";
    }
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
  let inset = 0;
  return {
    scroller,
    steps,
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
        if (inset === 0) cell.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
    },
    reveal(id, step, rightEdge, room) {
      // Room after the last step, so the last columns can scroll out from under the panel.
      inset = room;
      table.style.width = `${width + room}px`;
      ensureRow(id);
      const cell = cells.get(key(id, step));
      if (!cell) return;
      cell.scrollIntoView({ block: "nearest", inline: "nearest" }); // vertically, in every scroller
      const box = scroller.getBoundingClientRect();
      const c = cell.getBoundingClientRect();
      const right = Math.min(box.right, rightEdge) - 8;
      const left = box.left + ROW_HEAD + 4;
      if (c.right > right) scroller.scrollLeft += c.right - right;
      else if (c.left < left) scroller.scrollLeft -= left - c.left;
    },
  };
}

function tooltip(view: InstanceView, inst: Instance, s: GridStep, names: string[]): string {
  const known = inst.label !== null;
  const why = trustReason(s.trustworthy, s.fidelity);
  const p = s.probs?.[s.predicted];
  return [
    `${inst.id} · step ${s.step} · ${view.label}`,
    `predicted: ${className(names, s.predicted)}` + (p === undefined ? "" : ` (${fmt(p, 2)})`),
    known ? `true: ${className(names, inst.label)}` : "true label unknown",
    ...(s.thumb ? view.tooltip(s as StepSummary) : []),
    why ? `DON'T TRUST THIS EXPLANATION: ${why}` : "",
    s.changed ? "◆ the prediction changed at this step" : "",
  ].filter(Boolean).join("\n");
}

/** A cell and the box its map is painted into. Its marks (changed, low trust) sit on the label
 * line under the map, never on the map itself: the demo's marker is in the top-left corner. */
function cellFor(view: InstanceView, inst: Instance, s: GridStep, names: string[]): [HTMLElement, HTMLElement] {
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
    s.changed ? h("span", { class: "mark-changed", "aria-label": "prediction changed", "data-testid": "mark-changed" }, "◆")
      : null,
    h("span", { class: "cell-pred" }, known ? (correct ? "✓ " : "✗ ") : "", pred),
    low ? h("span", { class: "mark-lowfi", "data-testid": "mark-lowfi",
      "aria-label": `low trust: ${trustReason(s.trustworthy, s.fidelity)}` }, "⚠") : null));
  return [td, art];
}
