// Colour scales: a diverging map centred exactly at zero for weights, and a categorical palette for
// class labels. Both come from d3-scale-chromatic (ColorBrewer RdBu, Tableau10).
import { scaleDiverging } from "d3-scale";
import { interpolateRdBu, interpolateSinebow, schemeTableau10 } from "d3-scale-chromatic";

// Positive weights (evidence for the class) red, negative blue, zero white. RdBu runs red -> blue,
// so the domain is flipped.
const diverging = scaleDiverging(interpolateRdBu).domain([1, 0, -1]);

/** 256-entry RGB lookup table for values -1..1 (index = round((v + 1) * 127.5)). */
export const DIVERGING_LUT: Uint8ClampedArray = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const m = /rgb\((\d+), (\d+), (\d+)\)/.exec(diverging(i / 127.5 - 1))!;
    lut.set([+m[1], +m[2], +m[3]], i * 3);
  }
  return lut;
})();

export function divergingCss(v: number): string {
  return diverging(Math.max(-1, Math.min(1, v)));
}

/** Colour of class `k` among `n` classes (Tableau10, then evenly spaced hues). */
export function classColor(k: number, n: number): string {
  if (n <= schemeTableau10.length) return schemeTableau10[k % schemeTableau10.length];
  return interpolateSinebow(k / n);
}

export const SERIES = {
  a: "#2563eb",
  b: "#ea580c",
  fidelity: "#0f766e",
  r2: "#7c3aed",
  truth: "#16a34a",
  predicted: "#2563eb",
  deletion: "#dc2626",
  insertion: "#0891b2",
  random: "#6b7280",
};

/** Network Dissection's concept categories (Broden's), one colour each on every page that shows
 * them (the Dissection page, Summit's concept rings); other categories are grey. */
const CATEGORY_COLORS: Record<string, string> = {
  color: "#e11d48", object: "#2563eb", part: "#7c3aed", material: "#a16207", scene: "#059669",
  texture: "#ea580c",
};
export const catColor = (c: string): string => CATEGORY_COLORS[c] ?? "#6b7280";
