// Response shapes of the DeepVID JSON API (deepvid_plugin/http_api.md). Fields the frontend does
// not need are left out; everything here is read-only.

/** Weight map: int8 values, element i is int8[i] / 127 * scale (0 stays exactly 0). */
export interface EncodedMap {
  shape: number[];
  scale: number;
  data: string;
}

/** Image: uint8, min-max normalised per image, channel-major [C, H, W]. */
export interface EncodedImg {
  shape: number[];
  data: string;
}

export interface Fidelity {
  top1_agreement?: number;
  kl?: number;
  r2_top?: number;
  mae_top?: number;
  instance_agreement?: boolean;
  trustworthy?: boolean;
  /** Faithfulness evidence (absent in records of older versions). Deletion: lower is better. */
  deletion_auc?: number;
  /** Insertion: higher is better. */
  insertion_auc?: number;
  random_deletion_auc?: number;
  random_insertion_auc?: number;
  better_than_random?: boolean;
  /** Why the explanation is not trustworthy (absent or null when it is). */
  trust_reason?: string | null;
  /** Record route only: the curves, `evidence_steps + 1` probabilities each. */
  deletion_curve?: number[];
  insertion_curve?: number[];
  evidence_steps?: number;
  [key: string]: unknown;
}

/** A step summary as the overview (`instances`) serves it: without the maps, the per-class
 * probabilities and the evidence beyond its verdict, which each row's `timeline` carries. */
export interface GridStep {
  step: number;
  predicted: number;
  /** Only `better_than_random` (and older backends' full evidence). */
  fidelity: Fidelity;
  /** null: the kind cannot say (e.g. a Grad-CAM map recorded without evidence). */
  trustworthy: boolean | null;
  changed: boolean;
  /** The number generic charts plot for every kind (see KindInfo.headline); null when unknown. */
  headline?: number | null;
  /** Older backends send the whole summary here too. */
  thumb?: EncodedMap;
  probs?: number[];
  [key: string]: unknown;
}

/** A whole step summary (`timeline`, `compare`). */
export interface StepSummary extends GridStep {
  probs: number[];
  thumb: EncodedMap;
}

export interface RunInfo {
  run: string;
  name: string;
  instances: number;
  steps: number;
  /** The kinds the run holds (optional: older backends and saved pages may not list them). */
  kinds?: string[];
  /** When the run began (seconds since the epoch), where the backend knows. */
  started?: number;
  /** The run's page in its tracking server's own UI (MLflow app only). */
  url?: string;
}

export interface Experiment {
  id: string;
  name: string;
}

export interface RunsResp {
  runs: RunInfo[];
  /** Optional (MLflow app): experiments to pick from; `runs?experiment=ID` lists one of them. */
  experiments?: Experiment[];
  experiment?: string | null;
  /** Optional (saved compare page): the ordered (A, B) run pairs it can compare. */
  pairs?: [string, string][];
  warnings: string[];
}

/** One row of the overview: its step summaries are grid summaries. */
export interface Instance {
  id: string;
  label: number | null;
  image: EncodedImg;
  steps: GridStep[];
}

/** One instance with its whole step summaries (`timeline`). */
export interface Timeline {
  run: string;
  kind?: string;
  instance: string;
  class_names: string[];
  label: number | null;
  image: EncodedImg;
  steps: StepSummary[];
  warnings: string[];
}

/** One of the run's own metrics (`metrics`): test accuracy, loss. */
export interface MetricSeries {
  name: string;
  steps: number[];
  values: number[];
}

export interface MetricsResp {
  run: string;
  metrics: MetricSeries[];
  warnings: string[];
}

/** One kind a run holds (`kinds?run=R`). */
export interface KindInfo {
  kind: string;
  /** What one record explains: "instance" kinds share the grid; the others have their own views. */
  subject: "instance" | "layer" | "class" | "model";
  /** What the headline number is, e.g. "deletion AUC of the predicted-class map". */
  headline: string;
  higher_is_better: boolean;
  subjects: number;
  steps: number;
}

export interface KindsResp {
  run: string;
  kinds: KindInfo[];
  warnings: string[];
}

export interface InstancesResp {
  run: string;
  kind?: string;
  class_names: string[];
  /** The maps the step summaries hold (`thumb`, ...), served by each row's timeline. */
  maps?: string[];
  instances: Instance[];
  warnings: string[];
}

export interface RecordResp {
  run: string;
  kind?: string;
  instance: string;
  step: number;
  schema_version: number;
  class_names: string[];
  label: number | null;
  predicted: number;
  image: EncodedImg;
  /** The instance in the model's input space, signed [C, H, W] (absent from older backends). */
  input?: EncodedMap;
  teacher_probs: number[];
  student_probs: number[];
  weights: EncodedMap[];
  bias: number[];
  fidelity: Fidelity;
  trustworthy: boolean;
  neighbours: EncodedImg[];
  neighbour_teacher: number[];
  neighbour_student: number[];
  settings: Record<string, unknown>;
  warnings: string[];
}

export interface CompareMaps {
  step: number;
  /** = class_a (the only class before the `class` parameter existed). */
  class: number;
  /** The class run A's map shows, and run B's (older backends: both `class`). */
  class_a?: number;
  class_b?: number;
  a: EncodedMap;
  b: EncodedMap;
  /** null when A and B show different classes (a difference of two classes' maps means nothing). */
  diff: EncodedMap | null;
}

export interface CompareResp {
  instance: string;
  runs: string[];
  names: string[];
  class_names: string[];
  label: number | null;
  steps: number[];
  per_run: Record<string, StepSummary[]>;
  maps: CompareMaps[];
  /** The `class` asked for, as parsed (older backends: absent, meaning "a"). */
  class?: string | number;
  /** Steps without maps of the class asked for, and why (older backends: absent). */
  missing?: { step: number; reason: string }[];
  /** The instance, which the maps are drawn over (older backends: absent; null: none kept). */
  image?: EncodedImg | null;
  common_instances: string[];
  only_in: Record<string, string[]>;
  note: string | null;
  warnings: string[];
}

/** The record of a kind without a typed view (e.g. Grad-CAM), generic over the envelope. */
export interface EnvelopeRecordResp {
  run: string;
  kind: string;
  kind_version: number;
  instance: string;
  step: number;
  schema_version: number;
  class_names: string[];
  label: number | null;
  predicted: number | null;
  image: EncodedImg | null;
  input: EncodedMap | null;
  /** Maps (2-d or more) encoded as weight maps; vectors as lists of numbers. */
  arrays: Record<string, EncodedMap | number[]>;
  fidelity: Fidelity;
  trustworthy: boolean | null;
  headline: number | null;
  meta: Record<string, unknown>;
  settings: Record<string, unknown>;
  warnings: string[];
}

/** One explanation-drift alert (`alerts?run=R`, http_api.md). */
export interface Alert {
  step: number;
  detector: string;
  kind: string;
  subject: string;
  message: string;
  evidence: Record<string, unknown>;
}

export interface AlertsResp {
  run: string;
  alerts: Alert[];
  warnings: string[];
}
