// The overview: rows are tracked instances, columns are steps. Each cell is the predicted class's
// weight map over the instance. Cells are painted lazily when their row scrolls into view, so a
// 64 x 200 grid appears at once.
import type { App } from "./app";
import { className, h, fmt } from "./dom";
import { imageCanvas, mapCanvas } from "./draw";
import type { Instance, InstancesResp, StepSummary } from "./types";

export interface Overview {
  highlight(instance: string | null, step: number | null): void;
}

const CELL = 56;

export function renderOverview(app: App, parent: HTMLElement, data: InstancesResp): Overview {
  const names = data.class_names;
  const steps = [...new Set(data.instances.flatMap((i) => i.steps.map((s) => s.step)))].sort((a, b) => a - b);
  const cells = new Map<string, HTMLElement>();
  const rows = new Map<string, HTMLElement>();
  const key = (id: string, step: number) => `${step}\u0000${id}`;

  const head = h("tr", {}, h("th", { class: "corner" }, "instance \\ step"),
    ...steps.map((s) => h("th", { class: "step-head", scope: "col" }, String(s))));
  const tbody = h("tbody");
  const paint = new Map<Element, () => void>();
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      paint.get(e.target)?.();
      paint.delete(e.target);
      observer.unobserve(e.target);
    }
  }, { rootMargin: "400px" });

  for (const inst of data.instances) {
    const byStep = new Map(inst.steps.map((s) => [s.step, s]));
    const label = inst.label;
    const rowHead = h("th", { class: "row-head", scope: "row", "data-testid": "instance-row-head",
      onclick: () => app.selectInstance(inst.id) },
    h("div", { class: "row-head-inner" },
      imageCanvas(inst.image, 40, "thumb-img"),
      h("div", { class: "row-meta" },
        h("span", { class: "inst-id", title: inst.id }, inst.id),
        h("span", { class: "true-label" }, label === null ? "label unknown" : `true: ${className(names, label)}`))));
    const tds = steps.map((step) => {
      const s = byStep.get(step);
      if (!s) return h("td", { class: "cell missing", title: `no record at step ${step}` }, "·");
      const td = cellFor(app, inst, s, names);
      cells.set(key(inst.id, step), td);
      return td;
    });
    const tr = h("tr", { "data-testid": "instance-row", "data-instance": inst.id }, rowHead, ...tds);
    rows.set(inst.id, tr);
    paint.set(tr, () => {
      for (const td of tds) (td as HTMLElement & { paint?: () => void }).paint?.();
    });
    observer.observe(tr);
    tbody.appendChild(tr);
  }

  const table = h("table", { class: "grid", "data-testid": "overview-grid" }, h("thead", {}, head), tbody);
  const scroller = h("div", { class: "grid-scroll", tabindex: 0, "aria-label":
    "Overview grid. Arrow keys move the selection, Enter opens the detail panel, Escape closes it." }, table);
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
      const cell = cells.get(key(id, step));
      if (cell) {
        cell.classList.add("selected");
        current.push(cell);
        cell.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
    },
  };
}

function cellFor(app: App, inst: Instance, s: StepSummary, names: string[]): HTMLElement {
  const pred = className(names, s.predicted);
  const known = inst.label !== null;
  const correct = known && s.predicted === inst.label;
  const fid = s.fidelity?.top1_agreement;
  const tip = [
    `${inst.id} · step ${s.step}`,
    `predicted: ${pred} (${fmt(s.probs[s.predicted], 2)})`,
    known ? `true: ${className(names, inst.label)}` : "true label unknown",
    `fidelity (top-1 agreement): ${fmt(fid, 2)}`,
    s.trustworthy ? "" : "LOW FIDELITY: don't trust this explanation",
    s.changed ? "prediction changed at this step" : "",
  ].filter(Boolean).join("\n");
  const art = h("div", { class: "cell-art" });
  const td = h("td", {
    class: "cell" + (s.trustworthy ? "" : " lowfi") + (s.changed ? " changed" : ""),
    "data-testid": "overview-cell",
    "data-instance": inst.id,
    "data-step": s.step,
    "data-trustworthy": String(s.trustworthy),
    title: tip,
    onclick: () => app.openDetail(inst.id, s.step),
  },
  art,
  h("div", { class: "cell-label" + (known ? (correct ? " ok" : " bad") : "") },
    known ? (correct ? "✓ " : "✗ ") : "", pred),
  s.changed ? h("span", { class: "mark-changed", "aria-label": "prediction changed" }, "◆") : null,
  s.trustworthy ? null : h("span", { class: "mark-lowfi", "aria-label": "low fidelity" }, "⚠"));
  (td as HTMLElement & { paint?: () => void }).paint = () => {
    art.appendChild(mapCanvas(s.thumb, CELL, { image: inst.image }));
  };
  return td;
}
