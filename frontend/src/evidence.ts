// Trust and faithfulness evidence, read the same way by every view: is an explanation to be
// trusted, why not, and how its map does at deletion/insertion next to a random map.
import type { Fidelity, StepSummary } from "./types";

export const NO_EVIDENCE = "no faithfulness evidence (recorded by an older version)";
const NOT_BETTER = "the map is no better than a random map at deletion/insertion";
const LOW_FIDELITY = "the student does not mimic the model here";

export interface Evidence {
  deletion: number;
  insertion: number;
  randomDeletion: number;
  randomInsertion: number;
  better: boolean;
  deletionCurve: number[] | null;
  insertionCurve: number[] | null;
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The faithfulness evidence of a fidelity mapping, or null for records of older versions. */
export function evidenceOf(f: Fidelity | undefined | null): Evidence | null {
  if (!f) return null;
  const d = num(f.deletion_auc);
  const i = num(f.insertion_auc);
  const rd = num(f.random_deletion_auc);
  const ri = num(f.random_insertion_auc);
  if (d === null || i === null || rd === null || ri === null) return null;
  const curve = (c: unknown) => (Array.isArray(c) && c.length > 1 && c.every((v) => num(v) !== null) ? c as number[] : null);
  return {
    deletion: d, insertion: i, randomDeletion: rd, randomInsertion: ri,
    // The writer's verdict wins (it compared unrounded numbers); older writers left it out.
    better: typeof f.better_than_random === "boolean" ? f.better_than_random : d < rd && i > ri,
    deletionCurve: curve(f.deletion_curve),
    insertionCurve: curve(f.insertion_curve),
  };
}

/** Low trust: the writer said so, or the map does no better than a random map. (`null`: the
 * kind cannot say, e.g. a Grad-CAM map without evidence; only the evidence decides then.) */
export function lowTrust(trustworthy: boolean | null, f: Fidelity | undefined | null): boolean {
  return trustworthy === false || f?.better_than_random === false;
}

export function stepLowTrust(s: Pick<StepSummary, "trustworthy" | "fidelity">): boolean {
  return lowTrust(s.trustworthy, s.fidelity);
}

/** Why not to trust it, in words (null when it is trustworthy). */
export function trustReason(trustworthy: boolean | null, f: Fidelity | undefined | null): string | null {
  if (!lowTrust(trustworthy, f)) return null;
  if (typeof f?.trust_reason === "string" && f.trust_reason) return f.trust_reason;
  if (f?.better_than_random === false) return NOT_BETTER;
  return LOW_FIDELITY;
}
