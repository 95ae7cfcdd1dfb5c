// Detail panel for one (instance, step): every class's weight map, teacher vs student
// probabilities, the neighbour grid coloured by the teacher's label, and the settings used.
import { errorBox, type App } from "./app";
import { decodeMap } from "./codec";
import { classColor } from "./colors";
import { className, fmt, h, pct } from "./dom";
import { colorbar, imageCanvas, mapCanvas } from "./draw";
import type { RecordResp } from "./types";

let token = 0;

export function renderDetail(app: App, slot: HTMLElement, run: string, instance: string, step: number,
  names: string[]): void {
  const mine = ++token;
  const close = h("button", { class: "dv-icon-button", title: "Close (Esc)", "aria-label": "Close detail panel",
    "data-testid": "detail-close", onclick: () => app.closeDetail() }, "×");
  const body = h("div", { class: "detail-body" },
    h("div", { class: "dv-state loading small" }, h("div", { class: "spinner" }), "Loading the full record…"));
  const panel = h("section", { class: "card detail", "data-testid": "detail-panel",
    "data-instance": instance, "data-step": step },
    h("div", { class: "card-head" }, h("h3", {}, `Step ${step} · `, h("span", { class: "inst-ref" }, instance)), close),
    body);
  slot.appendChild(panel);

  app.source.get<RecordResp>("record", { run, instance, step: String(step) }).then(
    (rec) => {
      if (mine !== token) return;
      app.addWarnings(rec.warnings);
      body.textContent = "";
      body.append(...sections(rec, rec.class_names?.length ? rec.class_names : names));
      panel.dataset.loaded = "true";
    },
    (err) => {
      if (mine !== token) return;
      body.textContent = "";
      body.append(errorBox(err, `the record at step ${step}`));
    },
  );
}

function sections(rec: RecordResp, names: string[]): HTMLElement[] {
  const k = names.length;
  const trust = rec.trustworthy;
  const f = rec.fidelity ?? {};
  const summary = h("div", { class: "detail-summary" },
    h("span", { class: "pill" }, `predicted ${className(names, rec.predicted)}`),
    h("span", { class: "pill" }, rec.label === null ? "true label unknown" : `true ${className(names, rec.label)}`),
    trust
      ? h("span", { class: "pill good" }, "✓ trustworthy explanation")
      : h("span", { class: "pill warn", "data-testid": "lowfi-warning" },
        "⚠ low fidelity: the student does not mimic the model here, don't trust these maps"),
    h("span", { class: "muted" },
      `top-1 agreement ${fmt(f.top1_agreement)} · KL ${fmt(f.kl, 3)} · R² ${fmt(f.r2_top)}` +
      (f.mae_top !== undefined ? ` · |Δp| ${fmt(f.mae_top, 3)}` : "")));

  // Every class's map on one shared colour scale, so their strengths can be compared.
  const decoded = rec.weights.map((w) => decodeMap(w));
  const shared = Math.max(1e-12, ...decoded.map((m) => m.scale));
  const maps = h("div", { class: "class-maps" }, ...decoded.map((m, c) =>
    h("figure", { class: "class-map" + (c === rec.predicted ? " predicted" : "") + (c === rec.label ? " truth" : ""),
      "data-testid": "class-map", "data-class": c },
    mapCanvas(m, 72, { sharedScale: shared }),
    h("figcaption", {}, h("span", { class: "cm-name", title: className(names, c) }, className(names, c)),
      h("span", { class: "muted" }, pct(rec.student_probs[c]))))));

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
      if (off) fig.appendChild(h("span", { class: "nb-x", "aria-label": "student disagrees" }, "✗"));
      return fig;
    }))
    : h("p", { class: "muted" }, "No neighbour images were stored for this instance.");
  const usedLabels = [...new Set(nt)].sort((a, b) => a - b);
  const neighLegend = h("div", { class: "nb-legend" },
    ...usedLabels.map((c) => h("span", { class: "nb-key" },
      h("span", { class: "swatch", style: `background:${classColor(c, k)}` }), className(names, c))),
    h("span", { class: "nb-key wide" }, h("span", { class: "nb-x static" }, "✗"), "student disagrees with the teacher"));

  const settings = h("table", { class: "settings", "data-testid": "settings" },
    h("tbody", {}, ...Object.entries(rec.settings ?? {}).map(([key, v]) =>
      h("tr", {}, h("th", {}, key), h("td", {}, typeof v === "string" ? v : JSON.stringify(v))))),
    h("tbody", {}, h("tr", {}, h("th", {}, "schema_version"), h("td", {}, String(rec.schema_version)))));

  return [
    summary,
    h("div", { class: "sec" }, h("h4", {}, "Weight map per class"), colorbar(shared), maps,
      h("p", { class: "hint" }, "Red pixels push towards the class, blue pixels against it; percentages are the student's probabilities.")),
    h("div", { class: "sec" }, h("h4", {}, "Teacher vs student"),
      h("div", { class: "pb-legend" }, h("span", { class: "swatch teacher" }), "teacher (your model)",
        h("span", { class: "swatch student" }), "student (linear explanation)"), bars),
    h("div", { class: "sec" }, h("h4", {}, `Neighbours (${nt.length}, ${disagree} disagreements)`), neighLegend, neigh),
    h("div", { class: "sec" }, h("h4", {}, "Settings"), settings),
  ];
}
