// The faithfulness evidence section every instance kind's detail column shows (DeepVID's students,
// Grad-CAM's maps): the same table, verdict and curves, so the kinds can be compared honestly.
import { curveChart } from "./charts";
import { SERIES } from "./colors";
import { className, fmt, h } from "./dom";
import { evidenceOf, NO_EVIDENCE } from "./evidence";
import type { Fidelity } from "./types";

/** What the section reads from a record (every kind's record JSON has these). */
export interface EvidenceRecord {
  fidelity: Fidelity;
  class_names: string[];
  predicted: number | null;
}

/** The faithfulness section of a record of any instance kind: its deletion/insertion AUC next to a
 * random map's, the verdict, and the curves. `ranked` says what ranks the pixels. */
export function evidenceSection(rec: EvidenceRecord, why: string | null,
  ranked = "pixels, ranked by contribution"): HTMLElement {
  const f = rec.fidelity ?? {};
  const ev = evidenceOf(f);
  const sec = h("div", { class: "sec", "data-testid": "evidence" },
    h("h4", {}, "Faithfulness: does the map point at what the model uses?"));
  if (!ev) {
    sec.append(h("p", { class: "muted", "data-testid": "no-evidence" },
      NO_EVIDENCE.charAt(0).toUpperCase() + NO_EVIDENCE.slice(1) + "."));
    return sec;
  }
  const cmp = (mine: number, random: number, lowerIsBetter: boolean) =>
    (lowerIsBetter ? mine < random : mine > random) ? "better" : "worse";
  const row = (label: string, mine: number, random: number, lowerIsBetter: boolean, testid: string) =>
    h("tr", { "data-testid": testid },
      h("th", {}, label),
      h("td", { class: cmp(mine, random, lowerIsBetter) }, fmt(mine, 3)),
      h("td", {}, fmt(random, 3)));
  sec.append(
    h("table", { class: "evidence-table" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "this map"), h("th", {}, "random map"))),
      h("tbody", {},
        row("deletion AUC (lower is better)", ev.deletion, ev.randomDeletion, true, "evidence-deletion"),
        row("insertion AUC (higher is better)", ev.insertion, ev.randomInsertion, false, "evidence-insertion"))),
    ev.better
      ? h("p", { class: "verdict good", "data-testid": "evidence-verdict" },
        "✓ Better than a random map at both: removing the pixels it ranks highest makes the model lose its " +
        "prediction sooner, and restoring them brings it back sooner.")
      : h("p", { class: "verdict warn", "data-testid": "evidence-verdict" },
        "⚠ No better than a random map: this map does not show where the model looks."),
    ev.better && why !== null ? h("p", { class: "verdict warn" }, `Still not trustworthy: ${why}.`) : "",
  );
  if (ev.deletionCurve && ev.insertionCurve) {
    const n = ev.deletionCurve.length - 1;
    const xs = ev.deletionCurve.map((_, i) => i / n);
    sec.append(curveChart({
      title: `Probability of “${className(rec.class_names, rec.predicted ?? -1)}” as pixels are removed / restored`,
      testid: "evidence-curves",
      xs,
      xLabel: ranked,
      series: [
        { label: `deletion (AUC ${fmt(ev.deletion, 3)})`, values: ev.deletionCurve, color: SERIES.deletion },
        { label: `insertion (AUC ${fmt(ev.insertion, 3)})`, values: ev.insertionCurve, color: SERIES.insertion },
      ],
    }));
  }
  sec.append(h("p", { class: "hint" },
    "Deletion blanks the pixels the map ranks highest first: a faithful map makes the model's probability fall " +
    "fast (low area). Insertion restores them onto a blank image: it should rise fast (high area). The random " +
    "map is fixed per instance, so it is the same baseline at every step."));
  return sec;
}
