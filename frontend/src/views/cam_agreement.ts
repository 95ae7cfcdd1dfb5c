// The cam_agreement kind's views (Exp-KD, Pattern Recognition 2024): during a distillation run,
// does the student look where its teacher looks? The overview cell shows the teacher's and the
// student's top-1 CAMs side by side with their Pearson correlation; the detail column shows both
// maps for each of the teacher's top classes, the agreement numbers, the agreement over steps (the
// record carries its instance's history) and the faithfulness evidence of the student's map.
import { lineChart } from "../charts";
import { decodeChannels, toMap2D, type Map2D } from "../codec";
import { SERIES } from "../colors";
import { className, fmt, h, pct } from "../dom";
import { mapCanvas } from "../draw";
import { evidenceOf, NO_EVIDENCE, trustReason } from "../evidence";
import { evidenceSection } from "../evidence_panel";
import type { EncodedMap, EnvelopeRecordResp, Instance, StepSummary } from "../types";
import { registerView } from "./registry";

/** What this kind's step summaries add to the generic ones (deepvid_plugin/kinds/cam_agreement.py). */
interface AgreementSummary extends StepSummary {
  thumb_teacher?: EncodedMap;
  teacher_predicted?: number;
  agree?: boolean;
  pearson?: number | null;
  iou?: number | null;
}

interface HistoryEntry {
  step: number;
  pearson: number | null;
  iou: number | null;
  agree: boolean;
}

const TEACHER = "#7c3aed";

registerView({
  kind: "cam_agreement",
  label: "Teacher vs student",
  description: "Exp-KD: the teacher's and the distilled student's class activation maps, and how well they agree",
  layout: "instances",
  cellLegend: "teacher's (left) and student's (right) CAM of the teacher's top class",
  mapSign: "positive",
  headlineLabel: "Pearson r",
  lowTrust: "the student's map is no better than a random one at deletion/insertion",
  legendItems: () => [
    h("span", { class: "lg-item" }, h("b", {}, "r"), "Pearson correlation of the two maps (1: they look alike)"),
    h("span", { class: "lg-item", "data-testid": "legend-disagree" }, h("b", { class: "lab bad" }, "≠"),
      "teacher and student disagree on the top class"),
  ],
  cellArt(inst: Instance, s: StepSummary, size: number): HTMLElement {
    const a = s as AgreementSummary;
    const half = Math.floor(size / 2) - 1;
    const pair = h("div", { style: "display:flex;gap:2px;justify-content:center", "data-testid": "cam-pair" },
      a.thumb_teacher ? mapCanvas(a.thumb_teacher, half, { image: inst.image, sign: "positive" }) : h("span", {}, "–"),
      mapCanvas(a.thumb, half, { image: inst.image, sign: "positive" }));
    // "≠", not "✗": the cell's label already uses ✗ for a prediction that misses the true label
    return h("div", { style: `width:${size}px;height:${size}px;display:flex;flex-direction:column;justify-content:center` },
      pair,
      h("div", { style: "font-size:10px;line-height:14px", "data-testid": "cam-pearson" },
        `r ${num(a.pearson) === null ? "–" : fmt(a.pearson, 2)}`,
        a.agree === false ? h("b", { class: "lab bad", title: "teacher and student disagree on the top class" }, " ≠") : ""));
  },
  tooltip(s: StepSummary): string[] {
    const a = s as AgreementSummary;
    const ev = evidenceOf(s.fidelity);
    return [
      `agreement of the top-1 maps: Pearson ${fmt(num(a.pearson), 3)} · top-20% IoU ${fmt(num(a.iou), 3)}`,
      a.agree === undefined ? "" : a.agree ? "teacher and student agree on the top class"
        : "teacher and student disagree on the top class",
      ev ? `student's map: deletion AUC ${fmt(ev.deletion, 3)} (random ${fmt(ev.randomDeletion, 3)})` : NO_EVIDENCE,
    ].filter((line) => line !== "");
  },
  detail: (rec: unknown, names: string[]) => {
    const r = rec as EnvelopeRecordResp;
    return sections(r, r.class_names?.length ? r.class_names : names);
  },
});

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function isMap(v: unknown): v is EncodedMap {
  return typeof v === "object" && v !== null && "data" in v && "shape" in v;
}

/** Each class's map of a (k, H, W) array, each normalised to its own peak. */
function perClass(v: unknown): Map2D[] {
  if (!isMap(v)) return [];
  const { h: hh, w, channels } = decodeChannels(v);
  return channels.map((c) => toMap2D(c, hh, w));
}

function numbers(v: unknown): (number | null)[] {
  return Array.isArray(v) ? v.map(num) : [];
}

function sections(rec: EnvelopeRecordResp, names: string[]): HTMLElement[] {
  const meta = rec.meta ?? {};
  const classes = numbers(rec.arrays.classes).map((c) => c ?? -1);
  const teacherMaps = perClass(rec.arrays.cam_teacher);
  const studentMaps = perClass(rec.arrays.cam_student);
  const pearson = numbers(meta.pearson);
  const iou = numbers(meta.iou);
  const teacherPred = num(meta.teacher_pred) ?? classes[0] ?? null;
  const agree = meta.agree === true;
  const why = trustReason(rec.trustworthy, rec.fidelity);
  const tProbs = numbers(rec.arrays.teacher_probs);
  const sProbs = numbers(rec.arrays.student_probs);

  const summary = h("div", { class: "detail-summary" },
    h("span", { class: "pill" }, `teacher ${className(names, teacherPred)}`),
    h("span", { class: "pill" }, `student ${className(names, rec.predicted)}`),
    h("span", { class: agree ? "pill good" : "pill warn", "data-testid": "top1-agreement" },
      agree ? "✓ same top class" : "≠ different top class"),
    h("span", { class: "pill", "data-testid": "agreement-numbers" },
      `Pearson ${fmt(pearson[0], 3)} · top-20% IoU ${fmt(iou[0], 3)}`),
    why === null
      ? h("span", { class: "pill good" }, rec.trustworthy === null
        ? "no faithfulness evidence" : "✓ student's map better than a random map")
      : h("span", { class: "pill warn", "data-testid": "lowfi-warning" },
        "⚠ don't trust the student's map: ", h("span", { "data-testid": "trust-reason" }, why)),
    typeof meta.teacher_layer === "string"
      ? h("span", { class: "muted" }, `layers: teacher ${meta.teacher_layer}, student ${String(meta.student_layer)}`)
      : null);

  const fig = (map: Map2D | undefined, caption: string, testid: string, cls: number) => map
    ? h("figure", { class: "focus-fig", "data-testid": testid, "data-class": cls },
      mapCanvas(map, 112, { image: rec.image ?? undefined, sign: "positive" }), h("figcaption", {}, caption))
    : h("span", { class: "muted" }, "no map");
  const rows = classes.map((cls, j) =>
    h("div", { class: "focus-row", "data-testid": "cam-class-row", "data-class": cls },
      fig(teacherMaps[j], `teacher: ${className(names, cls)} (${pct(tProbs[cls])})`, "cam-teacher", cls),
      fig(studentMaps[j], `student: ${className(names, cls)} (${pct(sProbs[cls])})`, "cam-student", cls),
      h("div", { class: "muted", style: "align-self:center;min-width:9em", "data-testid": "cam-class-agreement" },
        h("div", {}, `#${j + 1} of the teacher`),
        h("div", {}, `Pearson ${fmt(pearson[j], 3)}`),
        h("div", {}, `top-20% IoU ${fmt(iou[j], 3)}`))));
  const maps = h("div", { class: "focus", "data-testid": "cam-agreement-maps" }, ...rows,
    h("p", { class: "map-key muted" }, "Class activation maps (the classifier's weights applied to the layer's " +
      "features, kept where positive, upsampled to the input), each scaled to its own peak. Pearson compares the " +
      "two maps pixel by pixel; the IoU compares the 20% of pixels each map ranks highest. Never negative: white is 0, " +
      "dark red where the class draws its evidence."));

  const sec: HTMLElement[] = [
    summary,
    h("div", { class: "sec" }, h("h4", {}, "Where the teacher and the student look"), maps),
  ];

  const history = (Array.isArray(meta.history) ? meta.history : []) as HistoryEntry[];
  if (history.length > 0) {
    const steps = history.map((e) => e.step);
    sec.push(h("div", { class: "sec" }, h("h4", {}, "Agreement over steps"), lineChart({
      title: "Teacher vs student, top-1 class maps (higher: the student looks where the teacher looks)",
      testid: "agreement-chart",
      steps,
      series: [
        { label: "Pearson", values: history.map((e) => num(e.pearson)), color: TEACHER },
        { label: "top-20% IoU", values: history.map((e) => num(e.iou)), color: SERIES.fidelity, dash: [5, 4] },
      ],
      yRange: [-1, 1],
      lowSteps: history.filter((e) => e.agree === false).map((e) => e.step),
      lowLabel: "steps where teacher and student disagree on the top class",
      selected: rec.step,
    }).el));
  }

  // The student's map of the teacher's top class is what the evidence ranks pixels by.
  sec.push(evidenceSection({ fidelity: rec.fidelity, class_names: names, predicted: teacherPred }, why,
    "pixels, ranked by the student's map of the teacher's top class"));
  return sec;
}
